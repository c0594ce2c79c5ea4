import contextlib
import re
import threading
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from apps.core.testing import bearer_client, service_client_token
from apps.orders.models import Order

BODY = {
    "currency": "EUR",
    "lines": [{"sku": "BOOK-1", "quantity": 2, "unit_price": 1250}],
    "payment_method": "pm_card_visa",
}


def place(client, body=BODY, key="key-1"):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/orders/", body, format="json", headers=headers)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    return response.json()


@pytest.mark.usefixtures("live_platform")
def test_placing_an_order_is_201_with_the_contract_fields(customer):
    _, client, _ = customer
    response = place(client)
    assert response.status_code == 201, response.content
    order = response.json()
    assert (order["status"], order["total"], order["currency"]) == ("paid", 2500, "EUR")
    assert order["lines"] == [{"sku": "BOOK-1", "quantity": 2, "unit_price": 1250, "line_total": 2500}]
    assert [step["to_status"] for step in order["status_history"]] == ["pending", "paid"]
    # Payments, asked through its API, holds that charge for this order.
    payments = bearer_client(service_client_token(client_id="payments-reader", scopes=["payments:charge"]))
    payment = payments.get(f"/api/payments/{order['payment_id']}/").json()
    assert (payment["order_id"], payment["amount"], payment["status"]) == (order["id"], 2500, "succeeded")
    # The receipt address came from the user's own token.
    assert Order.objects.get().customer_email == customer[2]


def statement(sql: str) -> str:
    """A statement as its verb and table (check constraints: `SELECT checks`), for comparing lists."""
    verb = sql.split(maxsplit=1)[0]
    if verb in {"BEGIN", "SAVEPOINT", "RELEASE"}:
        return verb
    table = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
    return f"{verb} {table[1]}" if table else f"{verb} checks"


@contextlib.contextmanager
def statements_of_this_thread() -> Iterator[list[str]]:
    """The statements this thread executes, summarized. Not those of the live server's threads, which on
    SQLite share this thread's connection (and so Django's query log)."""
    thread, found = threading.current_thread(), []

    def record(execute, sql, params, many, context):
        if threading.current_thread() is thread:  # reads sent together are "; "-joined (PostgreSQL)
            found.extend(statement(part) for part in sql.split("; "))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield found


@pytest.mark.usefixtures("live_platform")
def test_placing_an_order_is_these_statements_in_orders(customer):
    _, client, _ = customer
    place(client, key="warm-up")  # the service token fetched, the signing keys loaded
    with statements_of_this_thread() as statements:
        response = place(client, key="counted")
    assert (response.status_code, response.json()["status"]) == (201, "paid")
    assert [found for found in statements if found != "BEGIN"] == [  # SQLite's BEGIN IMMEDIATE only
        "SELECT orders_order",  # the key not used before
        "SELECT checks",  # the order's check constraints
        "SELECT checks",  # its line's
        "INSERT orders_order",
        "INSERT orders_orderline",
        "INSERT orders_orderstatuschange",
        # charged by payments
        "SELECT orders_order",  # locked
        "INSERT orders_orderstatuschange",
        "UPDATE orders_order",
        "SAVEPOINT",
        "SELECT checks",  # the outbox event's
        "RELEASE",
        "INSERT orders_orderevent",
        "SELECT orders_order",  # updated_at, as the database set it
        "SELECT orders_order",  # the answer: the order, its lines, its history
        "SELECT orders_orderline",
        "SELECT orders_orderstatuschange",
    ]


@pytest.mark.usefixtures("live_platform")
def test_a_retry_is_the_same_order_marked_as_replayed(customer):
    _, client, _ = customer
    first = place(client)
    again = place(client)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.usefixtures("live_platform")
def test_a_declined_card_is_still_201_with_status_payment_failed(customer):
    _, client, _ = customer
    response = place(client, {**BODY, "payment_method": "pm_card_declined"})
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["decline_code"]) == ("payment_failed", "card_declined")


@pytest.mark.usefixtures("live_platform")
def test_payments_down_is_a_503_problem_naming_the_pending_order(customer, settings):
    _, client, _ = customer
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    problem = assert_problem(place(client), 503, "payments_unavailable")
    order = Order.objects.get()
    assert (problem["order_id"], problem["order_status"], order.status) == (str(order.id), "pending", "pending")
    assert order.payment_id is None


@pytest.mark.django_db
def test_the_idempotency_key_is_required(customer):
    _, client, _ = customer
    problem = assert_problem(place(client, key=None), 400, "validation_error")
    assert list(problem["errors"]) == ["Idempotency-Key"]
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "currency": "euro"}, "currency"),
        ({**BODY, "lines": []}, "lines"),
        ({**BODY, "lines": "BOOK-1"}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 0, "unit_price": 1}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 1, "unit_price": -1}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 1, "unit_price": 1.5}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": "1", "unit_price": 1}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 1, "unit_price": 0}]}, "lines"),
        ({**BODY, "lines": [{"sku": "", "quantity": 1, "unit_price": 1}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 1, "unit_price": 1, "colour": "red"}]}, "lines"),
        ({**BODY, "lines": [{"sku": "B", "quantity": 10_000, "unit_price": 10**12}]}, "lines"),
        ({**BODY, "lines": [1]}, "lines"),
        ({**BODY, "payment_method": "visa"}, "payment_method"),
        ({key: value for key, value in BODY.items() if key != "currency"}, "currency"),
        ({**BODY, "coupon": "FREE"}, "coupon"),
    ],
)
def test_invalid_orders_are_400_problems_naming_the_field(customer, body, field):
    _, client, _ = customer
    problem = assert_problem(place(client, body), 400, "validation_error")
    assert field in problem["errors"]
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_a_body_that_is_not_json_is_400(customer):
    _, client, _ = customer
    response = client.post(
        "/api/orders/", "{not json", content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    assert_problem(response, 400, "parse_error")


@pytest.mark.django_db
def test_a_service_token_cannot_place_orders(db):
    from apps.core.testing import bearer_client, service_client_token

    client = bearer_client(service_client_token(client_id="payments", scopes=["notifications:publish"]))
    assert_problem(place(client), 403, "permission_denied")


def _order(customer_id, key, status="paid") -> Order:
    order = Order.objects.create(
        customer_id=customer_id,
        idempotency_key=key,
        request_fingerprint="f",
        currency="EUR",
        total=100,
        payment_method="pm_card_visa",
        status=status,
        payment_id=uuid.uuid4() if status in ("paid", "payment_failed") else None,
    )
    order.lines.create(position=1, sku="X", quantity=1, unit_price=100)
    return order


@pytest.mark.django_db
def test_the_list_is_mine_only_newest_first_and_paginated(customer):
    user_id, client, _ = customer
    mine = [_order(user_id, f"k{number}") for number in range(3)]
    _order(uuid.uuid4(), "theirs")
    page = client.get("/api/orders/?page_size=2").json()
    assert page["count"] == 3
    expected = sorted(mine, key=lambda order: (order.created_at, order.id), reverse=True)
    second = client.get(page["next"]).json()
    assert [order["id"] for order in page["results"] + second["results"]] == [str(order.id) for order in expected]
    assert_problem(client.get("/api/orders/?page=99"), 404, "not_found")


@pytest.mark.django_db
def test_another_users_order_is_404(customer):
    _, client, _ = customer
    theirs = _order(uuid.uuid4(), "theirs")
    assert_problem(client.get(f"/api/orders/{theirs.id}/"), 404, "not_found")
    assert_problem(client.post(f"/api/orders/{theirs.id}/cancel/"), 404, "not_found")
    assert Order.objects.get().status == "paid"


@pytest.mark.django_db
def test_reading_an_order_is_three_statements_sent_together_on_postgresql(customer, django_assert_num_queries):
    user_id, client, _ = customer
    order = _order(user_id, "k")
    order.status_changes.create(to_status="pending", reason="order placed")
    client.get(f"/api/orders/{order.id}/")  # the signing keys loaded, as in any warm worker
    trips = 1 if connection.vendor == "postgresql" else 3
    with django_assert_num_queries(trips) as captured:  # the order, its lines, its history
        response = client.get(f"/api/orders/{order.id}/")
    statements = [statement for query in captured.captured_queries for statement in query["sql"].split("; ")]
    tables = [re.search(r' FROM "(\w+)"', statement).group(1) for statement in statements]
    assert tables == ["orders_order", "orders_orderline", "orders_orderstatuschange"]
    assert [statement for statement in statements if "JOIN" in statement] == []
    body = response.json()
    assert (response.status_code, body["id"], len(body["lines"]), len(body["status_history"])) == (
        200,
        str(order.id),
        1,
        1,
    )


@pytest.mark.django_db
def test_a_page_of_orders_is_four_queries_however_many_orders_it_holds(customer, django_assert_num_queries):
    user_id, client, _ = customer
    for number in range(5):
        _order(user_id, f"k{number}")
    client.get("/api/orders/")
    with django_assert_num_queries(4):  # the count, the page, the lines, the histories
        response = client.get("/api/orders/")
    assert [len(order["lines"]) for order in response.json()["results"]] == [1] * 5


@pytest.mark.usefixtures("live_platform")
def test_a_cancel_payments_has_not_confirmed_is_202_cancelling_and_cancelling_again_finishes_it(customer, settings):
    _, client, _ = customer
    order = place(client).json()
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    pending = client.post(f"/api/orders/{order['id']}/cancel/")
    assert (pending.status_code, pending.json()["status"], pending["Retry-After"]) == (202, "cancelling", "2")
    settings.PAYMENTS_URL = reachable
    done = client.post(f"/api/orders/{order['id']}/cancel/")
    assert (done.status_code, done.json()["status"], done.json()["refunded_amount"]) == (200, "cancelled", 2500)
    assert [step["to_status"] for step in done.json()["status_history"]] == [
        "pending",
        "paid",
        "cancelling",
        "cancelled",
    ]


@pytest.mark.django_db
def test_cancel_refuses_a_body(customer):
    user_id, client, _ = customer
    order = _order(user_id, "k", status="payment_failed")
    assert_problem(
        client.post(f"/api/orders/{order.id}/cancel/", {"force": True}, format="json"), 400, "validation_error"
    )
    assert Order.objects.get().status == "payment_failed"
