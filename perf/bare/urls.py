"""The one view of the bare Django project: a small JSON body, nothing read, nothing written."""

from django.http import HttpRequest, JsonResponse
from django.urls import path


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": "bare"})


urlpatterns = [path("bare/", bare)]
