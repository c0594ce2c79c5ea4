"""The one HTTP client for calls between services.

Every call has a connect and a read timeout, forwards the request id and the trace (a client span
whose W3C `traceparent` the callee continues, apps.core.tracing), and authenticates as the
caller asks: with the user's own token (acting for the user), with this service's client-credentials
token, or not at all. Retries happen only where repeating is safe: connection failures (nothing was
sent), idempotent methods, and POSTs that carry an Idempotency-Key the callee deduplicates on.

Time budgets are derived here and nowhere else. `call_budget_seconds()` is the longest one call can
take (every attempt timing out, plus the pauses between them); `service_call_budget_seconds()` adds
the client-credentials token fetch that may precede it. Whoever waits on a call (a lease held
around it, a relay's per-event lease, gunicorn's graceful timeout around a request that makes it)
waits longer than these, so a retry never starts while the first attempt may still be at work.
Callees' Retry-After headers are not honoured: they would make the budget whatever the callee says.

A bulkhead bounds how many of a process's request threads one callee can hold: at most
SERVICE_CALL_MAX_IN_FLIGHT calls to one base URL at a time per process. A call beyond that waits
up to SERVICE_CALL_BULKHEAD_WAIT_SECONDS for a slot (a burst against a healthy callee passes), then
fails with ServiceCallError (every caller's retryable path: orders answers 503 and leaves the order
pending for a retry) instead of queueing every thread behind a slow callee, so the requests that
do not need it (reads) keep being served. The wait is part of each call's budget.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Literal
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from apps.core import context, tracing

logger = logging.getLogger(__name__)

Auth = Literal["user", "service"] | None
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = (502, 503, 504)
BACKOFF_FACTOR = 0.2  # urllib3: no pause after the first failure, then 0.4 s, 0.8 s, ...


class ServiceCallError(Exception):
    """A call that could not be completed (connection, timeout) or that the caller cannot authorise."""


class _Session(requests.Session):
    """requests' session, reading what the environment says about a callee once per process.

    On every request requests merges in the environment's settings for its URL: the proxies
    (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, found by scanning every variable) and the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). That took 0.12 ms of CPU per call here, about what gunicorn
    and a bare Django view take to answer a whole request. A pod's environment does not change while
    it runs, so the answer for a callee (scheme, host and port) is kept; a call that passes its own
    proxies, verify, cert or stream gets requests' own merge.
    """

    def __init__(self):
        super().__init__()
        self._environment_settings: dict[tuple[str, str], dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        callee = (parts.scheme, parts.netloc)
        found = self._environment_settings.get(callee)
        if found is None:  # two threads may both compute it: the same answer
            found = super().merge_environment_settings(url, {}, None, None, None)
            self._environment_settings[callee] = found
        return {**found, "proxies": dict(found["proxies"])}


def _session(*, retry_everything: bool) -> requests.Session:
    retries = settings.SERVICE_CALL_RETRIES
    if retry_everything:
        retry = Retry(
            total=retries,
            backoff_factor=BACKOFF_FACTOR,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # every method: used only for idempotent requests
            respect_retry_after_header=False,  # the budget below is ours, not the callee's
            raise_on_status=False,
        )
    else:
        # Only failures to connect, where the callee never saw the request.
        retry = Retry(total=retries, connect=retries, read=0, status=0, other=0, backoff_factor=BACKOFF_FACTOR)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=8, pool_maxsize=16)
    session = _Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _pauses_seconds(retries: int) -> float:
    """What urllib3 sleeps between `retries + 1` attempts (its backoff, see `Retry.get_backoff_time`)."""
    return sum(BACKOFF_FACTOR * 2 ** (failures - 1) for failures in range(2, retries + 1))


def call_budget_seconds(*, retried: bool = True, timeout: tuple[float, float] | None = None) -> float:
    """The longest one `call()` can take before it answers or raises ServiceCallError.

    `retried`: a call the client may repeat after a read timeout (an idempotent method, or a POST
    with an Idempotency-Key); other calls repeat only failed connects. With the defaults (0.5 s for
    a bulkhead slot, 1 s connect, 5 s read, 2 retries): 0.1 s + 3 x 6 s + 0.4 s = 18.5 s retried,
    0.1 s + 3 x 1 s + 5 s + 0.4 s = 8.5 s not.
    """
    connect, read = timeout or (settings.SERVICE_CALL_CONNECT_TIMEOUT, settings.SERVICE_CALL_READ_TIMEOUT)
    retries = settings.SERVICE_CALL_RETRIES
    wait = settings.SERVICE_CALL_BULKHEAD_WAIT_SECONDS
    if retried:
        return wait + (retries + 1) * (connect + read) + _pauses_seconds(retries)
    return wait + retries * connect + connect + read + _pauses_seconds(retries)


def service_call_budget_seconds() -> float:
    """The longest call made with this service's token: a token fetch (a POST without a key) and
    then the retried call itself. 27.0 s with the defaults."""
    return call_budget_seconds(retried=False) + call_budget_seconds(retried=True)


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
            body = json_object(response)
            token, expires_in = (body or {}).get("access_token"), (body or {}).get("expires_in")
            if not isinstance(token, str) or not token or type(expires_in) is not int or expires_in <= 0:
                raise ServiceCallError("auth answered the token request with something that is not a token")
            self._token = token
            self._expires_at = time.monotonic() + expires_in
            return self._token

    def forget(self) -> None:
        with self._lock:
            self._expires_at = 0.0


service_token = _ServiceToken()


class _Bulkhead:
    """Calls in flight per callee (base URL) in this process, bounded by SERVICE_CALL_MAX_IN_FLIGHT;
    a call waits up to SERVICE_CALL_BULKHEAD_WAIT_SECONDS for a slot, then is refused."""

    def __init__(self):
        self._in_flight: dict[str, int] = {}
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def slot(self, base_url: str) -> Iterator[None]:
        limit = settings.SERVICE_CALL_MAX_IN_FLIGHT
        deadline = time.monotonic() + settings.SERVICE_CALL_BULKHEAD_WAIT_SECONDS
        with self._changed:
            while (in_flight := self._in_flight.get(base_url, 0)) >= limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning("service call refused: callee busy", extra={"url": base_url, "in_flight": in_flight})
                    raise ServiceCallError(f"{base_url} is busy: {in_flight} calls of this process already in flight")
                self._changed.wait(remaining)
            self._in_flight[base_url] = in_flight + 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight[base_url] -= 1
                self._changed.notify_all()

    def in_flight(self, base_url: str) -> int:
        with self._changed:
            return self._in_flight.get(base_url, 0)


bulkhead = _Bulkhead()


def json_object(response: requests.Response) -> dict | None:
    """The JSON object a response carries (a resource or a problem), or None for anything else."""
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def sessions_close() -> None:
    """Close every kept-alive connection (tests do it before their servers stop)."""
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


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

    Raises ServiceCallError when no response could be had (refused, timed out, retries spent, or
    the callee's bulkhead full).
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
    target = urlsplit(url)
    started = time.perf_counter()
    with tracing.client_span(method, url, server_address=target.hostname or "", server_port=target.port) as span:
        tracing.headers_inject(headers)  # the callee's span joins this trace
        try:
            with bulkhead.slot(base_url.rstrip("/")):
                response = session.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    params=params,
                    timeout=timeout or (settings.SERVICE_CALL_CONNECT_TIMEOUT, settings.SERVICE_CALL_READ_TIMEOUT),
                )
        except (requests.RequestException, ServiceCallError) as error:
            tracing.client_span_finish(span, status=None, error=error.__class__.__name__)
            if isinstance(error, ServiceCallError):
                raise
            logger.warning("service call failed", extra={"url": url, "method": method, "error": str(error)})
            raise ServiceCallError(f"{method} {url} failed: {error.__class__.__name__}") from error
        tracing.client_span_finish(span, status=response.status_code)
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
