"""Orders, payments and notifications over real HTTP between real gunicorn processes, with the
outbox relays running as separate `manage.py outbox_relay` processes."""

import concurrent.futures
import re
import uuid

import pytest
import requests

from tests.e2e.flows import (
    DECLINED,
    TOTAL,
    VISA,
    customer,
    order_events,
    payments_of_order,
    service_token,
    times_received,
    wait_for,
)
from tests.e2e.test_auth_flow import assert_problem
from tests.live import LiveRelay

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ada(stack):
    """One customer for the tests of this module that only look at their own orders."""
    return customer(stack)


def test_the_journey_paid_and_declined_orders_reach_the_inbox(stack, ada):
    paid = ada.place(VISA)
    failed = ada.place(DECLINED)
    assert paid.status_code == failed.status_code == 201, (paid.text, failed.text)
    assert (paid.json()["status"], paid.json()["total"], paid.json()["currency"]) == ("paid", TOTAL, "EUR")
    assert (failed.json()["status"], failed.json()["decline_code"]) == ("payment_failed", "card_declined")

    payment = ada.get("payments", f"/api/payments/{paid.json()['payment_id']}/")
    assert payment.status_code == 200
    assert (payment.json()["status"], payment.json()["amount"]) == ("succeeded", TOTAL)
    assert payments_of_order(stack, failed.json()["id"]) == [(failed.json()["payment_id"], "declined", TOTAL)]

    def notified():
        by_order = {item["data"].get("order_id"): item["type"] for item in ada.inbox()}
        return by_order if {paid.json()["id"], failed.json()["id"]} <= set(by_order) else None

    by_order = wait_for(notified, message="both notifications in the inbox")
    assert by_order[paid.json()["id"]] == "order.paid"
    assert by_order[failed.json()["id"]] == "order.payment_failed"

    listed = ada.get("orders", "/api/orders/").json()["results"]
    assert [order["id"] for order in listed[:2]] == [failed.json()["id"], paid.json()["id"]]


def test_a_retried_order_with_the_same_key_is_the_same_order_charged_once(stack, ada):
    key = str(uuid.uuid4())
    first = ada.place(VISA, key=key)
    again = ada.place(VISA, key=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert (first.headers.get("Idempotent-Replayed"), again.headers.get("Idempotent-Replayed")) == (None, "true")
    assert payments_of_order(stack, first.json()["id"]) == [(first.json()["payment_id"], "succeeded", TOTAL)]


def test_the_same_key_for_a_different_order_is_422(ada):
    key = str(uuid.uuid4())
    assert ada.place(VISA, key=key).status_code == 201
    other = ada.place(VISA, key=key, lines=[{"sku": "OTHER", "quantity": 1, "unit_price": 5}])
    assert_problem(other, 422, "idempotency_key_reused")


def test_twenty_concurrent_requests_with_one_key_charge_once(stack, ada):
    """Run on SQLite and PostgreSQL alike: 20 requests at once against 2 workers x 4 threads."""
    key = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: ada.place(VISA, key=key), range(20)))
    statuses = sorted({response.status_code for response in responses})
    assert set(statuses) <= {201, 409}, [response.text for response in responses if response.status_code >= 500]
    created = [response.json() for response in responses if response.status_code == 201]
    conflicts = [response for response in responses if response.status_code == 409]
    assert created, "no request placed the order"
    assert len({order["id"] for order in created}) == 1
    for conflict in conflicts:
        assert_problem(conflict, 409, "idempotency_key_in_use")
    order = created[0]
    assert order["status"] == "paid"
    assert payments_of_order(stack, order["id"]) == [(order["payment_id"], "succeeded", TOTAL)]
    assert ada.place(VISA, key=key).json() == order  # settled: a later retry is a plain replay


def test_cancelling_a_paid_order_refunds_it_and_notifies(stack, ada):
    order = ada.place(VISA).json()
    cancelled = ada.post("orders", f"/api/orders/{order['id']}/cancel/")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["refunded_amount"]) == ("cancelled", TOTAL)
    again = ada.post("orders", f"/api/orders/{order['id']}/cancel/")
    assert again.json() == cancelled.json()
    payment = ada.get("payments", f"/api/payments/{order['payment_id']}/").json()
    assert payment["refunded_amount"] == TOTAL

    def notified():
        types = {item["type"] for item in ada.inbox() if item["data"].get("order_id") == order["id"]}
        return types if {"order.cancelled", "payment.refunded"} <= types else None

    assert wait_for(notified, message="cancellation and refund notifications") == {
        "order.paid",
        "order.cancelled",
        "payment.refunded",
    }


def test_another_users_order_and_payment_are_404(stack, ada):
    order = ada.place(VISA).json()
    mallory = customer(stack)
    assert_problem(mallory.get("orders", f"/api/orders/{order['id']}/"), 404, "not_found")
    assert_problem(mallory.post("orders", f"/api/orders/{order['id']}/cancel/"), 404, "not_found")
    assert_problem(mallory.get("payments", f"/api/payments/{order['payment_id']}/"), 404, "not_found")
    assert ada.get("orders", f"/api/orders/{order['id']}/").json()["status"] == "paid"


def test_notifications_down_for_a_while_then_every_notification_arrives_exactly_once(stack, ada):
    notifications = stack["notifications"]
    notifications.stop()
    try:
        placed = [ada.place(method).json() for method in (VISA, DECLINED, VISA)]
        assert [order["status"] for order in placed] == ["paid", "payment_failed", "paid"]
        order_ids = [order["id"] for order in placed]
        # The relay tried and failed at least once for each event while notifications was down.
        wait_for(
            lambda: (
                all(
                    attempts >= 1 and not delivered
                    for _, attempts, delivered in order_events(stack, order_ids).values()
                )
                and len(order_events(stack, order_ids)) == 3
            ),
            message="the relay's failed attempts",
        )
    finally:
        notifications.start()
    events = wait_for(
        lambda: (
            (events := order_events(stack, order_ids))
            and all(delivered for _, _, delivered in events.values())
            and events
        ),
        message="every event delivered after notifications came back",
    )
    assert times_received(stack, events) == dict.fromkeys(events, 1)
    inbox = [item for item in ada.inbox() if item["data"].get("order_id") in order_ids]
    assert sorted(item["event_id"] for item in inbox) == sorted(str(event_id) for event_id in events)


def test_payments_down_fails_the_order_cleanly_and_a_retry_settles_it(stack, ada):
    payments = stack["payments"]
    key = str(uuid.uuid4())
    payments.stop()
    try:
        problem = assert_problem(ada.place(VISA, key=key), 503, "payments_unavailable")
        assert problem["order_status"] == "pending"
        pending = ada.get("orders", f"/api/orders/{problem['order_id']}/").json()
        assert (pending["status"], pending["payment_id"]) == ("pending", None)
        assert_problem(ada.post("orders", f"/api/orders/{problem['order_id']}/cancel/"), 409, "payment_pending")
    finally:
        payments.start()
    assert payments_of_order(stack, problem["order_id"]) == []
    settled = ada.place(VISA, key=key)
    assert settled.status_code == 201
    assert (settled.json()["id"], settled.json()["status"]) == (problem["order_id"], "paid")
    assert payments_of_order(stack, problem["order_id"]) == [(settled.json()["payment_id"], "succeeded", TOTAL)]
    assert [step["to_status"] for step in settled.json()["status_history"]] == ["pending", "paid"]


def test_two_relays_at_once_never_deliver_an_event_twice(stack, ada):
    # The backlog the two relays share must be exactly the twelve events below: what earlier tests
    # left pending (an order settled just before) is delivered by the running relay first.
    wait_for(
        lambda: (
            not stack["orders"].sql("SELECT id FROM orders_orderevent WHERE delivered_at IS NULL AND failed_at IS NULL")
        ),
        message="earlier tests' events delivered",
    )
    stack.relays["orders"].stop()
    relays = [LiveRelay(stack["orders"], args=("--batch-size", "1", "--poll-interval", "0.05")) for _ in range(2)]
    try:
        placed = [ada.place(VISA).json() for _ in range(12)]
        order_ids = [order["id"] for order in placed]
        assert len(order_events(stack, order_ids)) == 12
        for relay in relays:  # both start on the same backlog and drain it together
            relay.start(wait=False)
        for relay in relays:
            relay.wait_started()
        events = wait_for(
            lambda: (
                (events := order_events(stack, order_ids))
                and all(delivered for _, _, delivered in events.values())
                and events
            ),
            message="every event delivered by the two relays",
        )
        for relay in relays:
            assert relay.stop() == 0, relay.log_text()
    finally:
        for relay in relays:
            relay.stop()
        stack.relays["orders"] = LiveRelay(stack["orders"]).start()
    assert times_received(stack, events) == dict.fromkeys(events, 1)
    assert all(attempts == 1 for _, attempts, _ in events.values())
    # Every event was claimed once in all: no relay took a row the other held.
    claimed = [sum(map(int, re.findall(r"claimed (\d+)", relay.log_text()))) for relay in relays]
    assert sum(claimed) == 12, claimed


def test_the_relay_runs_once_and_exits(stack, ada):
    stack.relays["orders"].stop()
    try:
        order = ada.place(DECLINED).json()
        result = stack["orders"].manage("outbox_relay", "--once")
    finally:
        stack.relays["orders"] = LiveRelay(stack["orders"]).start()
    assert "delivered 1" in result.stdout
    events = order_events(stack, [order["id"]])
    assert [(kind, delivered) for kind, _, delivered in events.values()] == [("order.payment_failed", True)]
    assert times_received(stack, events) == dict.fromkeys(events, 1)


def test_payments_replays_a_charge_and_refuses_a_key_in_flight_or_reused(stack):
    """Straight to payments, as the orders service: 10 identical charges at once, one key."""
    headers = {"Authorization": f"Bearer {service_token(stack, 'orders')}", "Idempotency-Key": str(uuid.uuid4())}
    charge = {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "amount": 990, "currency": "USD"}
    url = f"{stack['payments'].url}/api/payments/"

    def post(body):
        return requests.post(url, json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(post, [{**charge, "payment_method": VISA}] * 10))
    assert {response.status_code for response in responses} <= {201, 409}
    answers = [response for response in responses if response.status_code == 201]
    assert len({response.json()["id"] for response in answers}) == 1
    assert [response.headers.get("Idempotent-Replayed") for response in answers].count(None) <= 1
    for conflict in (response for response in responses if response.status_code == 409):
        assert_problem(conflict, 409, "idempotency_key_in_use")
    replay = post({**charge, "payment_method": VISA})
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert_problem(post({**charge, "payment_method": DECLINED}), 422, "idempotency_key_reused")
    assert payments_of_order(stack, charge["order_id"]) == [(replay.json()["id"], "succeeded", 990)]
