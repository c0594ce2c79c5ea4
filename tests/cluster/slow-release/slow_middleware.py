"""0.8 s more for every request that reaches the views: a performance regression."""

import time


class SlowMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        time.sleep(0.8)
        return self.get_response(request)
