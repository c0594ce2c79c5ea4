"""Schemathesis hooks for tests/e2e/test_api_contract.py: which token each operation is called with.

Users place orders and read their inbox; services (the orders service's client, which holds every
payments scope and notifications:publish) charge, refund, read payments and publish events. The
tokens come from the environment the test gives `st run`.
"""

import os

import schemathesis

SERVICE_PATHS = ("/api/payments/", "/api/notifications/events/")


@schemathesis.auth(refresh_interval=None)  # chosen per operation: nothing to cache across them
class PlatformTokens:
    def get(self, case, context):
        if context.operation.path.startswith(SERVICE_PATHS):
            return os.environ["SCHEMATHESIS_SERVICE_TOKEN"]
        return os.environ["SCHEMATHESIS_USER_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
