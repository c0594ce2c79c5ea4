"""Kernel middleware: probes answered first, a request id on every request, a JSON access log
line per request, and a cap on body size that DRF's parsers would otherwise not enforce."""

import logging
import re
import time
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core import context, probes
from apps.core.problems import problem_response

access_logger = logging.getLogger("apps.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain: it ends up in logs and response headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ProbeMiddleware:
    """Answers /healthz, /readyz, /version and /metrics before anything else runs.

    Kubelet probes and Prometheus scrapes address the pod IP, which ALLOWED_HOSTS rightly does not
    list, and they should not count as API traffic in request metrics or fill the access log.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = probes.VIEWS.get(request.path)
        if view is not None and request.method in {"GET", "HEAD"}:
            return view(request)
        return self.get_response(request)


class RequestIdMiddleware:
    """Keeps a sane incoming X-Request-ID or makes one; echoes it, logs the request as one JSON line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        id_token = context.request_id.set(request_id)
        authorization = request.headers.get("Authorization", "")
        bearer = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        caller_token = context.caller_token.set(bearer)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            access_logger.log(
                logging.WARNING if response.status_code >= 500 else logging.INFO,
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "remote_addr": request.META.get("REMOTE_ADDR", ""),
                },
            )
            return response
        finally:
            context.request_id.reset(id_token)
            context.caller_token.reset(caller_token)


class BodySizeLimitMiddleware:
    """413 for a declared body above MAX_REQUEST_BODY_BYTES.

    Django checks DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` is read; DRF's parsers read
    the stream directly, so without this a huge JSON body would be parsed in full.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(400, code="bad_request", detail="Content-Length is not a number.")
        if declared > settings.MAX_REQUEST_BODY_BYTES:
            return problem_response(
                413,
                code="payload_too_large",
                detail=f"Request bodies are limited to {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return self.get_response(request)
