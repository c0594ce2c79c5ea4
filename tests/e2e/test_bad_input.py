"""Bad input on every endpoint of orders, payments and notifications: a clear 4xx problem, never a 500."""

import uuid

import pytest
import requests

from tests.client import assert_problem
from tests.e2e.flows import customer, service_token

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-4000-8000-000000000000"
ORDER = {"currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}], "payment_method": "pm_card_visa"}
KEY = {"Idempotency-Key": "bad-input-key"}

# (service, method, path, body or raw text, extra headers, status, code)
CASES = [
    ("orders", "POST", "/api/orders/", ORDER, {}, 400, "validation_error"),  # no Idempotency-Key
    ("orders", "POST", "/api/orders/", ORDER, {"Idempotency-Key": "has spaces"}, 400, "validation_error"),
    ("orders", "POST", "/api/orders/", "{broken", KEY, 400, "parse_error"),
    ("orders", "POST", "/api/orders/", [ORDER], KEY, 400, "validation_error"),
    ("orders", "POST", "/api/orders/", {**ORDER, "lines": None}, KEY, 400, "validation_error"),
    ("orders", "POST", "/api/orders/", {**ORDER, "lines": [{"sku": "A"}]}, KEY, 400, "validation_error"),
    ("orders", "POST", "/api/orders/", {**ORDER, "currency": 978}, KEY, 400, "validation_error"),
    (
        "orders",
        "POST",
        "/api/orders/",
        {**ORDER, "lines": [{**ORDER["lines"][0], "quantity": 2**70}]},
        KEY,
        400,
        "validation_error",
    ),
    ("orders", "GET", "/api/orders/?page=abc", None, {}, 404, "not_found"),
    ("orders", "GET", "/api/orders/?page_size=-1", None, {}, 200, None),
    ("orders", "GET", "/api/orders/not-a-uuid/", None, {}, 404, "not_found"),
    ("orders", "GET", f"/api/orders/{UNKNOWN}/", None, {}, 404, "not_found"),
    ("orders", "POST", f"/api/orders/{UNKNOWN}/cancel/", None, {}, 404, "not_found"),
    ("orders", "PUT", "/api/orders/", ORDER, KEY, 405, "method_not_allowed"),
    ("orders", "POST", "/api/orders", ORDER, KEY, 404, "not_found"),
    ("payments", "POST", "/api/payments/", {}, KEY, 403, "permission_denied"),  # users never charge
    ("payments", "GET", f"/api/payments/{UNKNOWN}/", None, {}, 404, "not_found"),
    ("payments", "GET", "/api/payments/123/", None, {}, 404, "not_found"),
    ("payments", "POST", f"/api/payments/{UNKNOWN}/refund/", {}, KEY, 403, "permission_denied"),
    ("notifications", "POST", "/api/notifications/events/", {}, {}, 403, "permission_denied"),
    ("notifications", "GET", "/api/notifications/?unread=perhaps", None, {}, 400, "validation_error"),
    ("notifications", "GET", "/api/notifications/?page=0", None, {}, 404, "not_found"),
    ("notifications", "POST", f"/api/notifications/{UNKNOWN}/read/", None, {}, 404, "not_found"),
    ("notifications", "POST", "/api/notifications/x/read/", None, {}, 404, "not_found"),
]


@pytest.fixture(scope="module")
def bob(stack):
    return customer(stack)


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{case[0]}-{case[1]}-{case[2]}-{index}" for index, case in enumerate(CASES)]
)
def test_bad_input_is_a_4xx_problem(stack, bob, case):
    service, method, path, body, headers, status, code = case
    kwargs = (
        {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else {"json": body}
    )
    response = requests.request(
        method,
        f"{stack[service].url}{path}",
        headers={**bob.headers, **headers, **kwargs.pop("headers", {})},
        timeout=10,
        **kwargs,
    )
    if code is None:
        assert response.status_code == status, response.text
        return
    assert_problem(response, status, code)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"amount": 1e3}, "amount"),
        ({"currency": "EURO"}, "currency"),
        ({"order_id": 7}, "order_id"),
        ({"payment_method": "card; DROP TABLE"}, "payment_method"),
        ({"receipt_email": "nope"}, "receipt_email"),
    ],
)
def test_bad_charges_from_a_service_are_400_and_not_stored(stack, body, field):
    token = service_token(stack, "orders")
    charge = {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "amount": 100, "currency": "EUR"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    url = f"{stack['payments'].url}/api/payments/"
    auth = {"Authorization": f"Bearer {token}"}
    bad = requests.post(
        url, json={**charge, "payment_method": "pm_card_visa", **body}, headers={**auth, **key}, timeout=10
    )
    assert field in assert_problem(bad, 400, "validation_error")["errors"]
    good = requests.post(url, json={**charge, "payment_method": "pm_card_visa"}, headers={**auth, **key}, timeout=10)
    assert good.status_code == 201, good.text  # the failed request stored nothing under the key


def test_a_service_without_the_publish_scope_cannot_publish(stack):
    token = service_token(stack, "notifications")  # its client has no scopes
    response = requests.post(
        f"{stack['notifications'].url}/api/notifications/events/",
        json={"event_id": str(uuid.uuid4()), "type": "order.paid", "user_id": str(uuid.uuid4()), "data": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert_problem(response, 403, "permission_denied")


def test_bad_events_are_400_and_a_repeat_is_202_duplicate(stack):
    token = service_token(stack, "payments")
    url = f"{stack['notifications'].url}/api/notifications/events/"
    auth = {"Authorization": f"Bearer {token}"}
    bad = requests.post(url, json={"event_id": "x", "type": "?", "user_id": 1, "data": []}, headers=auth, timeout=10)
    assert set(assert_problem(bad, 400, "validation_error")["errors"]) == {"event_id", "type", "user_id", "data"}
    event = {"event_id": str(uuid.uuid4()), "type": "order.paid", "user_id": str(uuid.uuid4()), "data": {}}
    first = requests.post(url, json=event, headers=auth, timeout=10)
    again = requests.post(url, json=event, headers=auth, timeout=10)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (202, "duplicate")
