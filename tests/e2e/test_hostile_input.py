"""Hostile input against real gunicorn processes, with DEBUG off (production) and on (`make up`).

Every answer to it is a problem+json with the request id (never a 500 where the client is at fault,
never an HTML page), and no body ever carries a traceback, a setting or a file path: 404, 405,
400 for a foreign Host, 413, 415, 431 and 414 (refused by gunicorn before Django), a malformed
request, and a real 500 (a service whose table is gone).
"""

import socket
import uuid

import pytest
import requests

from tests.client import PASSWORD, assert_problem, register_and_login
from tests.e2e.flows import customer, service_token
from tests.live import Databases, stack_start

pytestmark = pytest.mark.e2e

LEAKS = ("Traceback", "SECRET_KEY", "DATABASE", "/work/", "site-packages", 'File "', "<html", "<!DOCTYPE", "<h1")


def assert_clean_problem(response: requests.Response, status: int, code: str | None = None) -> dict:
    body = assert_problem(response, status, code)
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} in {response.text[:300]}"
    return body


@pytest.fixture(scope="module", params=["debug-off", "debug-on"])
def small_stack(request, tmp_path_factory):
    """auth and payments in one mode; payments' payments table dropped after start (a real 500)."""
    workdir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    debug = {"DEBUG": "true" if request.param == "debug-on" else "false"}
    databases = Databases(workdir, None)  # SQLite: the table is dropped with the sqlite3 module
    starting = stack_start(workdir, databases, ("auth", "payments"), env={"all": debug})
    stack = next(starting)
    stack["payments"].drop_table = lambda: _sqlite_drop(stack["payments"].env["DATABASE_URL"], "payments_payment")
    yield request.param, stack
    starting.close()


def _sqlite_drop(url: str, table: str) -> None:
    import sqlite3

    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        connection.commit()
    finally:
        connection.close()


def raw_exchange(url: str, data: bytes) -> tuple[int, dict[str, str], str]:
    """Send raw bytes to a service and read its whole answer (the server closes the connection)."""
    host, port = url.removeprefix("http://").split(":")
    chunks = []
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body.decode()


def test_an_unknown_path_is_a_404_problem(small_stack):
    _, stack = small_stack
    assert_clean_problem(requests.get(f"{stack['payments'].url}/nothing/here", timeout=5), 404, "not_found")


def test_a_foreign_host_is_a_400_problem(small_stack):
    _, stack = small_stack
    response = requests.get(f"{stack['payments'].url}/api/payments/", headers={"Host": "evil.example.com"}, timeout=5)
    assert_clean_problem(response, 400, "bad_request")


def test_a_wrong_method_is_a_405_problem(small_stack):
    _, stack = small_stack
    response = requests.delete(f"{stack['auth'].url}/api/auth/register/", timeout=5)
    assert_clean_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_a_body_over_the_limit_is_a_413_problem(small_stack):
    _, stack = small_stack
    response = requests.post(
        f"{stack['auth'].url}/api/auth/register/",
        data=b'{"email": "' + b"a" * 300_000 + b'"}',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_clean_problem(response, 413, "payload_too_large")


def test_a_body_of_another_media_type_is_a_415_problem(small_stack):
    _, stack = small_stack
    response = requests.post(
        f"{stack['auth'].url}/api/auth/register/", data="<xml/>", headers={"Content-Type": "text/xml"}, timeout=5
    )
    assert_clean_problem(response, 415, "unsupported_media_type")


def test_an_oversized_header_is_a_431_problem(small_stack):
    _, stack = small_stack
    response = requests.get(f"{stack['payments'].url}/api/payments/", headers={"X-Filler": "a" * 10_000}, timeout=5)
    assert_clean_problem(response, 431, "header_too_large")


def test_too_many_headers_is_a_431_problem(small_stack):
    _, stack = small_stack
    headers = {f"X-Filler-{index}": "a" for index in range(150)}
    response = requests.get(f"{stack['payments'].url}/api/payments/", headers=headers, timeout=5)
    assert_clean_problem(response, 431, "header_too_large")


def test_a_request_line_over_the_limit_is_a_414_problem(small_stack):
    _, stack = small_stack
    response = requests.get(f"{stack['payments'].url}/api/payments/?q={'a' * 8000}", timeout=5)
    assert_clean_problem(response, 414, "uri_too_long")


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", b"GET /x HTTP/9.9\r\nHost: a\r\n\r\n"],
    ids=["request-line", "header-without-colon", "http-version"],
)
def test_a_malformed_request_is_a_400_problem(small_stack, raw):
    _, stack = small_stack
    status, headers, body = raw_exchange(stack["payments"].url, raw)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert f'"request_id": "{headers["x-request-id"]}"' in body
    assert "<" not in body


def test_a_deeply_nested_body_to_an_unauthenticated_endpoint_is_a_400_problem(small_stack):
    _, stack = small_stack
    response = requests.post(
        f"{stack['auth'].url}/api/auth/register/",
        data="[" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_clean_problem(response, 400, "parse_error")


def test_a_server_error_is_a_500_problem_without_internals(small_stack):
    """The last test of the module: it breaks payments for good (its table is gone)."""
    _, stack = small_stack
    _, tokens = register_and_login(stack["auth"].url)
    stack["payments"].drop_table()
    response = requests.get(
        f"{stack['payments'].url}/api/payments/{uuid.uuid4()}/",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    body = assert_clean_problem(response, 500, "internal_error")
    assert body["detail"] == "An unexpected error occurred; quote the request id when reporting it."


# --- text the database cannot store, on every service, through the shared production stack ---------

UNSTORABLE = ["a\x00b", "\ud800", "x\udfffy"]


def json_body(value: dict) -> bytes:
    """JSON as a hostile client writes it: lone surrogates escaped, which json.dumps does as well."""
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize("text", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
@pytest.mark.parametrize("field", ["email", "password"])
@pytest.mark.parametrize("path", ["/api/auth/register/", "/api/auth/token/"])
def test_unstorable_text_to_auth_is_a_400_problem(stack, path, field, text):
    body = {"email": f"u-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, field: f"{PASSWORD}{text}"}
    response = requests.post(
        f"{stack['auth'].url}{path}", data=json_body(body), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_clean_problem(response, 400, "parse_error")


@pytest.mark.parametrize("text", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
def test_unstorable_text_in_an_order_is_a_400_problem(stack, text):
    bob = customer(stack)
    order = {
        "currency": "EUR",
        "lines": [{"sku": f"A{text}", "quantity": 1, "unit_price": 100}],
        "payment_method": "pm_card_visa",
    }
    response = requests.post(
        f"{stack['orders'].url}/api/orders/",
        data=json_body(order),
        headers={**bob.headers, "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        timeout=10,
    )
    assert_clean_problem(response, 400, "parse_error")


@pytest.mark.parametrize("text", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
def test_unstorable_text_in_an_event_is_a_400_problem_and_nothing_is_stored(stack, text):
    token = service_token(stack, "payments")
    event_id = str(uuid.uuid4())
    event = {"event_id": event_id, "type": "order.paid", "user_id": str(uuid.uuid4()), "data": {"note": text}}
    response = requests.post(
        f"{stack['notifications'].url}/api/notifications/events/",
        data=json_body(event),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert_clean_problem(response, 400, "parse_error")
    stored = stack["notifications"].sql(
        "SELECT count(*) FROM notifications_processedevent WHERE event_id = %s", (event_id.replace("-", ""),)
    )
    assert stored == [(0,)]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/register/", {"email": "a" * 250 + "@example.com", "password": PASSWORD}, "email"),
        ("/api/auth/register/", {"email": "long@example.com", "password": "p" * 129}, "password"),
        ("/api/auth/token/refresh/", {"refresh_token": "r" * 129}, "refresh_token"),
        (
            "/api/auth/token/",
            {"grant_type": "client_credentials", "client_id": "c" * 65, "client_secret": "s"},
            "client_id",
        ),
    ],
    ids=["email", "password", "refresh-token", "client-id"],
)
def test_over_long_strings_are_a_400_naming_the_field(stack, path, body, field):
    response = requests.post(f"{stack['auth'].url}{path}", json=body, timeout=10)
    assert field in assert_clean_problem(response, 400, "validation_error")["errors"]


def test_an_over_long_idempotency_key_is_a_400_naming_the_header(stack):
    bob = customer(stack)
    order = {
        "currency": "EUR",
        "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}],
        "payment_method": "pm_card_visa",
    }
    response = requests.post(
        f"{stack['orders'].url}/api/orders/",
        json=order,
        headers={**bob.headers, "Idempotency-Key": "k" * 256},
        timeout=10,
    )
    assert "Idempotency-Key" in assert_clean_problem(response, 400, "validation_error")["errors"]
