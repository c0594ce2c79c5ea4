"""The one HTTP client for calls between services.

Every call has a connect and a read timeout, forwards the request id, and authenticates as the
caller asks: with the user's own token (acting for the user), with this service's client-credentials
token, or not at all. Retries happen only where repeating is safe: connection failures (nothing was
sent), idempotent methods, and POSTs that carry an Idempotency-Key the callee deduplicates on.
"""

import logging
import threading
import time
from typing import Literal

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from apps.core import context

logger = logging.getLogger(__name__)

Auth = Literal["user", "service"] | None
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = (502, 503, 504)


class ServiceCallError(Exception):
    """A call that could not be completed (connection, timeout) or that the caller cannot authorise."""


def _session(*, retry_everything: bool) -> requests.Session:
    retries = settings.SERVICE_CALL_RETRIES
    if retry_everything:
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # every method: used only for idempotent requests
            respect_retry_after_header=True,
            raise_on_status=False,
        )
    else:
        # Only failures to connect, where the callee never saw the request.
        retry = Retry(total=retries, connect=retries, read=0, status=0, other=0, backoff_factor=0.2)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=8, pool_maxsize=16)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_sessions: dict[bool, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session_for(retry_everything: bool) -> requests.Session:
    with _sessions_lock:
        if retry_everything not in _sessions:
            _sessions[retry_everything] = _session(retry_everything=retry_everything)
        return _sessions[retry_everything]


class _ServiceToken:
    """This service's client-credentials access token, reused until shortly before it expires."""

    def __init__(self):
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if time.monotonic() < self._expires_at - 30:
                return self._token
            if not (settings.SERVICE_CLIENT_ID and settings.SERVICE_CLIENT_SECRET):
                raise ServiceCallError("SERVICE_CLIENT_ID and SERVICE_CLIENT_SECRET are needed for service calls")
            response = call(
                "POST",
                settings.AUTH_URL,
                "/api/auth/token/",
                auth=None,
                json={
                    "grant_type": "client_credentials",
                    "client_id": settings.SERVICE_CLIENT_ID,
                    "client_secret": settings.SERVICE_CLIENT_SECRET,
                },
            )
            if response.status_code != 200:
                raise ServiceCallError(f"auth refused this service's credentials: HTTP {response.status_code}")
            body = response.json()
            self._token = body["access_token"]
            self._expires_at = time.monotonic() + int(body["expires_in"])
            return self._token

    def forget(self) -> None:
        with self._lock:
            self._expires_at = 0.0


service_token = _ServiceToken()


def call(
    method: str,
    base_url: str,
    path: str,
    *,
    auth: Auth,
    json: object | None = None,
    params: dict | None = None,
    idempotency_key: str | None = None,
    timeout: tuple[float, float] | None = None,
) -> requests.Response:
    """Send one request to another service and return its response, whatever its status.

    Raises ServiceCallError when no response could be had (refused, timed out, retries spent).
    """
    method = method.upper()
    headers = {"Accept": "application/json"}
    if context.request_id.get():
        headers["X-Request-ID"] = context.request_id.get()
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if auth == "user":
        if not context.caller_token.get():
            raise ServiceCallError("no user token to forward: the incoming request carried none")
        headers["Authorization"] = f"Bearer {context.caller_token.get()}"
    elif auth == "service":
        headers["Authorization"] = f"Bearer {service_token.get()}"
    session = _session_for(method in IDEMPOTENT_METHODS or idempotency_key is not None)
    url = f"{base_url.rstrip('/')}/{path.lstrip('/')}"
    started = time.perf_counter()
    try:
        response = session.request(
            method,
            url,
            headers=headers,
            json=json,
            params=params,
            timeout=timeout or (settings.SERVICE_CALL_CONNECT_TIMEOUT, settings.SERVICE_CALL_READ_TIMEOUT),
        )
    except requests.RequestException as error:
        logger.warning("service call failed", extra={"url": url, "method": method, "error": str(error)})
        raise ServiceCallError(f"{method} {url} failed: {error.__class__.__name__}") from error
    if auth == "service" and response.status_code == 401:
        service_token.forget()  # a rotated key or revoked client: fetch a fresh token next time
    logger.info(
        "service call",
        extra={
            "url": url,
            "method": method,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return response
