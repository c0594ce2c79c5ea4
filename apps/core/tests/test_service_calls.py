"""The service client against a real HTTP server on 127.0.0.1: headers, auth, retries, failures."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from apps.core import context, service_calls
from apps.core.service_calls import ServiceCallError, call


class Recorder(BaseHTTPRequestHandler):
    """Answers each request with the next planned status and records what it received."""

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        status = self.server.plan.pop(0) if self.server.plan else 200
        payload = json.dumps(self.server.payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.received, httpd.plan, httpd.payload = [], [], {"ok": True}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh_sessions():
    service_calls._sessions.clear()
    service_calls.service_token.forget()
    yield
    service_calls._sessions.clear()
    service_calls.service_token.forget()


def test_request_id_is_forwarded(server):
    token = context.request_id.set("req-abc")
    try:
        call("GET", server.url, "/things", auth=None)
    finally:
        context.request_id.reset(token)
    assert server.received[0]["headers"]["X-Request-ID"] == "req-abc"


def test_user_auth_forwards_the_callers_token(server):
    token = context.caller_token.set("user-token")
    try:
        call("GET", server.url, "/things", auth="user")
    finally:
        context.caller_token.reset(token)
    assert server.received[0]["headers"]["Authorization"] == "Bearer user-token"


def test_user_auth_without_a_caller_token_fails_before_sending(server):
    with pytest.raises(ServiceCallError, match="no user token to forward"):
        call("GET", server.url, "/things", auth="user")
    assert server.received == []


@override_settings(SERVICE_CLIENT_ID="orders", SERVICE_CLIENT_SECRET="s" * 32)
def test_service_auth_gets_a_client_credentials_token_once_and_reuses_it(server):
    server.payload = {"access_token": "svc-token", "token_type": "Bearer", "expires_in": 600}
    with override_settings(AUTH_URL=server.url):
        call("GET", server.url, "/one", auth="service")
        call("GET", server.url, "/two", auth="service")
    token_requests = [r for r in server.received if r["path"] == "/api/auth/token/"]
    assert len(token_requests) == 1
    assert json.loads(token_requests[0]["body"]) == {
        "grant_type": "client_credentials",
        "client_id": "orders",
        "client_secret": "s" * 32,
    }
    assert [r["headers"]["Authorization"] for r in server.received if r["path"] != "/api/auth/token/"] == [
        "Bearer svc-token",
        "Bearer svc-token",
    ]


def test_get_is_retried_on_503_then_succeeds(server):
    server.plan = [503, 503, 200]
    response = call("GET", server.url, "/things", auth=None)
    assert response.status_code == 200
    assert len(server.received) == 3


def test_post_without_idempotency_key_is_not_retried_on_503(server):
    server.plan = [503, 200]
    response = call("POST", server.url, "/charges", auth=None, json={"amount": 100})
    assert response.status_code == 503
    assert len(server.received) == 1


def test_post_with_idempotency_key_is_retried_with_the_same_key(server):
    server.plan = [502, 200]
    response = call("POST", server.url, "/charges", auth=None, json={"amount": 100}, idempotency_key="key-1")
    assert response.status_code == 200
    assert [r["headers"]["Idempotency-Key"] for r in server.received] == ["key-1", "key-1"]


def test_a_4xx_is_returned_not_retried(server):
    server.plan = [422]
    response = call("GET", server.url, "/things", auth=None)
    assert response.status_code == 422
    assert len(server.received) == 1


def test_connection_refused_raises_service_call_error():
    with pytest.raises(ServiceCallError, match="failed: ConnectionError"):
        call("GET", "http://127.0.0.1:9", "/things", auth=None, timeout=(0.2, 0.2))


@override_settings(SERVICE_CALL_CONNECT_TIMEOUT=1.0, SERVICE_CALL_READ_TIMEOUT=5.0, SERVICE_CALL_RETRIES=2)
def test_the_budgets_are_derived_from_the_timeouts_and_retries():
    # 0.1 s for a bulkhead slot, 3 attempts of 1 s + 5 s, and 0.4 s of backoff between them.
    assert service_calls.call_budget_seconds(retried=True) == pytest.approx(18.5)
    # Only failed connects are repeated: 2 x 1 s, then 1 s + 5 s, with the same wait and backoff.
    assert service_calls.call_budget_seconds(retried=False) == pytest.approx(8.5)
    assert service_calls.service_call_budget_seconds() == pytest.approx(27.0)
    assert service_calls.call_budget_seconds(timeout=(0.5, 1.0)) == pytest.approx(5.0)


@override_settings(SERVICE_CALL_CONNECT_TIMEOUT=0.2, SERVICE_CALL_READ_TIMEOUT=0.3, SERVICE_CALL_RETRIES=2)
def test_a_hanging_callee_costs_at_most_the_budget():
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    started = time.monotonic()
    try:
        with pytest.raises(ServiceCallError):
            call("GET", f"http://127.0.0.1:{listener.getsockname()[1]}", "/hang", auth=None)
    finally:
        listener.close()
    assert 3 * 0.3 <= time.monotonic() - started <= service_calls.call_budget_seconds() + 0.5


def test_a_retry_after_from_the_callee_does_not_stretch_the_budget(server):
    import time

    server.plan = [503, 200]
    started = time.monotonic()
    with override_settings(SERVICE_CALL_RETRIES=1):
        # Recorder answers without Retry-After; a header of an hour would be ignored the same way.
        session = service_calls._session(retry_everything=True)
    assert session.get_adapter(server.url).max_retries.respect_retry_after_header is False
    assert call("GET", server.url, "/x", auth=None).status_code == 200
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "payload",
    [{"token_type": "Bearer"}, {"access_token": "", "expires_in": 600}, {"access_token": "t", "expires_in": "600"}],
    ids=["no-token", "empty-token", "string-expiry"],
)
def test_a_token_answer_that_is_not_a_token_is_a_service_call_error(server, payload):
    server.payload = payload
    with (
        override_settings(AUTH_URL=server.url, SERVICE_CLIENT_ID="orders", SERVICE_CLIENT_SECRET="s" * 32),
        pytest.raises(ServiceCallError, match="not a token"),
    ):
        call("GET", server.url, "/one", auth="service")


def test_gunicorns_graceful_timeout_outlasts_the_slowest_request_that_makes_a_service_call(monkeypatch):
    import os
    import runpy
    from pathlib import Path

    monkeypatch.setattr(os, "environ", dict(os.environ))  # the config sets defaults in the environment
    repository = Path(__file__).resolve().parents[3]
    config = runpy.run_path(str(repository / "platform" / "gunicorn.conf.py"))
    assert config["graceful_timeout"] > service_calls.service_call_budget_seconds()


class Holding(BaseHTTPRequestHandler):
    """Answers only once the test lets it: a slow callee whose calls stay in flight."""

    def do_GET(self):
        self.server.arrived.release()
        self.server.answer.wait(timeout=10)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Holding)
    httpd.arrived, httpd.answer = threading.Semaphore(0), threading.Event()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.answer.set()
    httpd.shutdown()
    httpd.server_close()


@override_settings(SERVICE_CALL_MAX_IN_FLIGHT=2, SERVICE_CALL_BULKHEAD_WAIT_SECONDS=0.2)
def test_a_slow_callee_holds_at_most_its_bulkhead_of_threads_and_other_callees_are_unaffected(slow_server, server):
    held = [
        threading.Thread(target=call, args=("GET", slow_server.url, "/slow"), kwargs={"auth": None}) for _ in range(2)
    ]
    for thread in held:
        thread.start()
    for _ in held:
        assert slow_server.arrived.acquire(timeout=5)
    assert service_calls.bulkhead.in_flight(slow_server.url) == 2

    with pytest.raises(ServiceCallError, match="is busy: 2 calls of this process already in flight"):
        call("GET", slow_server.url, "/one-too-many", auth=None)
    assert call("GET", server.url, "/another-callee", auth=None).status_code == 200

    slow_server.answer.set()
    for thread in held:
        thread.join(timeout=10)
    assert service_calls.bulkhead.in_flight(slow_server.url) == 0
    assert call("GET", slow_server.url, "/room-again", auth=None).status_code == 200


@override_settings(SERVICE_CALL_MAX_IN_FLIGHT=1)
def test_a_failed_call_gives_its_slot_back():
    with pytest.raises(ServiceCallError):
        call("GET", "http://127.0.0.1:9", "/refused", auth=None)
    assert service_calls.bulkhead.in_flight("http://127.0.0.1:9") == 0


@override_settings(SERVICE_CALL_MAX_IN_FLIGHT=1, SERVICE_CALL_BULKHEAD_WAIT_SECONDS=5)
def test_a_call_waits_for_a_slot_freed_within_the_bulkhead_wait(slow_server):
    first = threading.Thread(target=call, args=("GET", slow_server.url, "/first"), kwargs={"auth": None})
    first.start()
    assert slow_server.arrived.acquire(timeout=5)
    threading.Timer(0.3, slow_server.answer.set).start()  # the first call ends while the second waits
    assert call("GET", slow_server.url, "/second", auth=None).status_code == 200
    first.join(timeout=10)


@pytest.fixture
def proxy_environment(monkeypatch):
    """Sets the proxy variables a test names, lower case (urllib prefers it), none other."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch.setenv


def test_a_proxy_the_environment_names_carries_the_calls(server, proxy_environment):
    # The recorder as the proxy: it receives the callee's whole URL, and the callee's name is never
    # looked up or connected to.
    proxy_environment("http_proxy", server.url)

    call("GET", "http://payments.internal:8000", "/things", auth=None)
    call("GET", "http://payments.internal:8000", "/others", auth=None)

    assert [received["path"] for received in server.received] == [
        "http://payments.internal:8000/things",
        "http://payments.internal:8000/others",
    ]


def test_a_callee_no_proxy_names_is_called_directly(server, proxy_environment):
    proxy_environment("http_proxy", "http://127.0.0.1:9")  # nothing listens there: a call through it fails
    proxy_environment("no_proxy", "127.0.0.1")

    call("GET", server.url, "/things", auth=None)

    assert [received["path"] for received in server.received] == ["/things"]


def test_the_environment_is_read_once_per_callee(server, proxy_environment, monkeypatch):
    merged = []
    merge = service_calls.requests.Session.merge_environment_settings

    def counted(self, url, *args):
        merged.append(url)
        return merge(self, url, *args)

    monkeypatch.setattr(service_calls.requests.Session, "merge_environment_settings", counted)
    proxy_environment("no_proxy", "127.0.0.1,localhost")
    other = server.url.replace("127.0.0.1", "localhost")

    for path in ("/a", "/b", "/c"):
        call("GET", server.url, path, auth=None)
    call("GET", other, "/d", auth=None)
    call("GET", other, "/e", auth=None)

    assert merged == [f"{server.url}/a", f"{other}/d"]
    assert [received["path"] for received in server.received] == ["/a", "/b", "/c", "/d", "/e"]
