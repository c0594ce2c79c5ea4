"""Kernel middleware: a trace span and a request id on every API request, probes answered before
anything else runs, one JSON access log line per API request, the error contract held for every answer (problem+json, in
every mode, DEBUG included), and a cap on body size that DRF's parsers would otherwise not enforce."""

import logging
import re
import time
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from apps.core import context, probes, tracing
from apps.core.problem_codes import status_code
from apps.core.problems import CONTENT_TYPE, database_unavailable, is_database_unavailable, problem_response

access_logger = logging.getLogger("apps.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain: it ends up in logs and response headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


_TRACE_CONTEXT_HEADERS = (("traceparent", "HTTP_TRACEPARENT"), ("tracestate", "HTTP_TRACESTATE"))


class TraceMiddleware:
    """One server span per API request, continuing the caller's W3C `traceparent` (apps.core.tracing).

    First in the chain, so that everything after it (the access log line included) runs inside the
    span and logs its trace id. Probes and scrapes are not traced: they are not API traffic.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in probes.VIEWS:
            return self.get_response(request)
        attributes = {"http.request.method": request.method, "url.path": request.path, "url.scheme": request.scheme}
        # The two trace context headers straight from the environ: `request.headers` would copy
        # every header into a mapping first, for a lookup that usually finds nothing.
        carrier = {name: request.META[key] for name, key in _TRACE_CONTEXT_HEADERS if key in request.META}
        with tracing.server_span(request.method, carrier, attributes) as span:
            response = self.get_response(request)
            match = request.resolver_match
            tracing.server_span_finish(
                span,
                method=request.method,
                route=f"/{match.route}" if match is not None and match.route else None,
                status=response.status_code,
                request_id=response.get(REQUEST_ID_HEADER, ""),
            )
            return response


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
    """Keeps a sane incoming X-Request-ID or makes one; echoes it, logs the request as one JSON line.

    First in the chain, so that every answer carries the id, probes' and error pages' included;
    probes and scrapes are left out of the access log.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")  # REQUEST_ID_HEADER, as WSGI names it
        request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else context.request_id_new()
        request.request_id = request_id
        id_token = context.request_id.set(request_id)
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        bearer = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        caller_token = context.caller_token.set(bearer)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            if request.path in probes.VIEWS:
                return response
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


# Headers of the original error answer that mean something to the client.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Cache-Control")


class ProblemResponseMiddleware:
    """Every 4xx/5xx leaves as problem+json, whoever produced it.

    DRF errors already are (apps.core.problems.exception_handler), and so are Django's error views
    with DEBUG off (the handlers in apps.urls). With DEBUG on, Django answers an unknown path, a
    foreign Host and an unhandled exception with its technical pages instead, which show settings,
    file paths and tracebacks; `make up` runs with DEBUG on. Any error answer that is not a problem
    is replaced here by the problem of its status, so no mode ever sends one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or response.get("Content-Type", "").startswith(CONTENT_TYPE):
            return response
        status = response.status_code
        if status == 404:
            detail = f"No resource at {request.path[:200]}."
        elif status == 500:
            detail = "An unexpected error occurred; quote the request id when reporting it."
        else:
            detail = f"{HTTPStatus(status).phrase}."
        problem = problem_response(
            status,
            code=status_code(status),
            detail=detail,
            headers={name: response[name] for name in _KEPT_HEADERS if response.has_header(name)},
        )
        problem.cookies = response.cookies
        return problem


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


class AdminOnlyMiddleware:
    """Sessions, CSRF, staff login and messages (settings.ADMIN_MIDDLEWARE) on the admin's pages only.

    The API authenticates every request by its bearer token (apps.core.tokens) and keeps no session;
    only the admin's pages, at settings.ADMIN_PATH, log staff in with a session cookie and post forms
    that need CSRF protection. Elsewhere these middlewares did nothing but cost every API request a
    session store, a lazy user, a message storage and a CSRF pass. Here they form a chain of their
    own, entered only for admin paths; their `process_view` hooks (CSRF's check) run for those paths
    from this middleware's own. A middleware with other hooks is refused at start-up, since they
    would never run.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = f"/{settings.ADMIN_PATH}"
        handler = get_response
        view_hooks = []
        for path in reversed(settings.ADMIN_MIDDLEWARE):
            middleware = import_string(path)(handler)
            for hook in ("process_exception", "process_template_response"):
                if hasattr(middleware, hook):
                    raise ImproperlyConfigured(f"{path} has {hook}(), which ADMIN_MIDDLEWARE cannot run")
            if hasattr(middleware, "process_view"):
                view_hooks.insert(0, middleware.process_view)
            handler = convert_exception_to_response(middleware)
        self.admin = handler
        self.view_hooks = tuple(view_hooks)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.prefix):
            return self.admin(request)
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:
        if not request.path_info.startswith(self.prefix):
            return None
        for hook in self.view_hooks:
            response = hook(request, view, args, kwargs)
            if response is not None:
                return response
        return None


class DatabaseUnavailableMiddleware:
    """A view that loses its database connection answers 503 `database_unavailable` with Retry-After.

    Innermost, so that it sees a view's exception first, DEBUG on or off (DRF re-raises what its
    handler does not know). What fails the same way outside views reaches `problems.server_error`,
    which answers the same.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_database_unavailable(exception):
            return database_unavailable(exception)
        return None
