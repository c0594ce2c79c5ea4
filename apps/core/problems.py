"""Every error leaves a service as application/problem+json (RFC 9457) carrying the request id.

DRF exceptions go through `exception_handler`; what fails outside DRF (unknown URL, a body too
large, an unhandled exception) goes through the handler views that `apps.urls` registers.
"""

import logging
import sqlite3
import sys
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import Counter
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core import context

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:problem-type:"

logger = logging.getLogger(__name__)

PROBLEMS = Counter(
    "http_problems",
    "Error answers (problem+json) by status and problem code: validation_error, idempotency_key_in_use, ...",
    ["status", "code"],
)


def problem(status: int, *, code: str, detail: str, title: str | None = None, **extensions) -> dict:
    """The body of a problem: a stable `type` per `code`, a human `title` and `detail`, the request id."""
    PROBLEMS.labels(status=str(status), code=code).inc()
    return {
        "type": f"{TYPE_PREFIX}{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": context.request_id.get(),
        **extensions,
    }


def problem_response(status: int, *, code: str, detail: str, headers: dict | None = None, **extensions) -> JsonResponse:
    """A problem+json response for code that runs outside DRF (middleware, Django's handlers)."""
    response = JsonResponse(
        problem(status, code=code, detail=detail, **extensions), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _first_code(detail) -> str:
    """The machine code DRF attached to an error detail (nested lists and dicts included)."""
    if isinstance(detail, dict):
        detail = next(iter(detail.values()), "")
    if isinstance(detail, list):
        detail = detail[0] if detail else ""
    return getattr(detail, "code", None) or "error"


# What exception_handler answers: DRF's own exceptions, and Django's it turns into them.
ANSWERED_EXCEPTIONS = (exceptions.APIException, DjangoValidationError, Http404, DjangoPermissionDenied)


def exception_handler(exc: Exception, context_: dict) -> Response | None:
    """DRF's handler decides status and headers (WWW-Authenticate, Retry-After); we decide the body."""
    if isinstance(exc, DjangoValidationError):  # raised by full_clean() and validators in services
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):  # what DRF's handler does too, done here so the code is right
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context_)
    if response is None:
        return None  # not an API error: Django's handler500 answers, and the exception is logged
    status = response.status_code
    if isinstance(exc, exceptions.ValidationError):
        body = problem(
            status,
            code="validation_error",
            title="Invalid request",
            detail="The request has invalid fields; see `errors`.",
            errors=exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail},
        )
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        code = _first_code(exc.detail) if isinstance(exc, exceptions.APIException) else "error"
        if isinstance(exc, exceptions.APIException) and code == "error":
            code = exc.default_code
        body = problem(status, code=code, detail=str(detail) or HTTPStatus(status).phrase)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            body["retry_after"] = int(exc.wait)
    # An exception may carry more for the client: members of the problem (the id of what it is
    # about) and headers (Retry-After).
    body.update(getattr(exc, "extensions", None) or {})
    for name, value in (getattr(exc, "headers", None) or {}).items():
        response[name] = value
    response.data = body
    response.content_type = CONTENT_TYPE
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(400, code="bad_request", detail="The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(403, code="permission_denied", detail="You do not have permission for this.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(404, code="not_found", detail=f"No resource at {request.path}.")


# A lost or refused database connection (the server restarting or failing over, no connection slot
# left, a busy SQLite file) means the service is unavailable for a moment, not that it has a bug: 503
# with Retry-After, so clients and balancers retry, instead of a 500. Only those: SQLite reports a
# missing table as an OperationalError too, and that stays a 500.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_SECONDS = 1
# SQLSTATE classes: connection exception, insufficient resources (too many connections), operator
# intervention (admin shutdown, cannot connect now, statement cancelled).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file")


def is_database_unavailable(error: BaseException | None) -> bool:
    if not isinstance(error, DATABASE_UNAVAILABLE):
        return False
    if isinstance(error, InterfaceError):
        return True  # a connection already closed
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        return any(text in str(cause) for text in _SQLITE_UNAVAILABLE)
    sqlstate = getattr(cause, "sqlstate", None)
    # psycopg's own connection failures (refused, server closed the connection) carry no SQLSTATE.
    return sqlstate is None or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def database_unavailable(error: Exception) -> HttpResponse:
    logger.warning("database unavailable: %s", str(error).strip().splitlines()[0] if str(error).strip() else error)
    return problem_response(
        503,
        code="database_unavailable",
        detail="The service's database is unavailable for a moment; retry shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this inside its `except` around the request: the exception is the one in hand.
    error = sys.exc_info()[1]
    if is_database_unavailable(error):
        return database_unavailable(error)
    return problem_response(
        500, code="internal_error", detail="An unexpected error occurred; quote the request id when reporting it."
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return problem_response(403, code="csrf_failed", detail=f"CSRF verification failed: {reason}")
