import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core import service_calls
from apps.core.errors import Conflict, UnprocessableEntity
from apps.orders import services
from apps.orders.models import Order, OrderEvent
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund
from apps.payments.services import request_fingerprint

pytestmark = pytest.mark.usefixtures("live_platform")

CUSTOMER = "00000000-0000-4000-8000-0000000000c1"
LINES = [{"sku": "BOOK-1", "quantity": 2, "unit_price": 1250}, {"sku": "PEN", "quantity": 1, "unit_price": 300}]


def place(key="order-key-1", **overrides) -> Order:
    arguments = {
        "customer_id": CUSTOMER,
        "idempotency_key": key,
        "currency": "EUR",
        "lines": LINES,
        "payment_method": "pm_card_visa",
        "customer_email": "ada@example.com",
        **overrides,
    }
    return services.order_create(**arguments).order


def history(order: Order) -> list[tuple[str, str]]:
    return list(order.status_changes.order_by("created_at", "id").values_list("from_status", "to_status"))


def test_a_visa_order_is_paid_once_with_its_total_and_emits_order_paid():
    order = place()
    payment = Payment.objects.get()
    assert (order.status, order.total, order.payment_id) == ("paid", 2800, payment.id)
    assert (payment.order_id, payment.amount, payment.currency, payment.status) == (order.id, 2800, "EUR", "succeeded")
    assert history(order) == [("", "pending"), ("pending", "paid")]
    event = OrderEvent.objects.get()
    assert (event.type, str(event.user_id), event.aggregate_id) == ("order.paid", CUSTOMER, order.id)
    assert event.data == {
        "order_id": str(order.id),
        "total": 2800,
        "currency": "EUR",
        "email": "ada@example.com",
        "payment_id": str(payment.id),
    }
    assert list(order.lines.values_list("position", "sku", "quantity", "unit_price")) == [
        (1, "BOOK-1", 2, 1250),
        (2, "PEN", 1, 300),
    ]


def test_a_declined_card_fails_the_order_and_captures_nothing():
    order = place(payment_method="pm_card_declined")
    assert (order.status, order.decline_code) == ("payment_failed", "card_declined")
    assert history(order) == [("", "pending"), ("pending", "payment_failed")]
    assert Payment.objects.filter(status="succeeded").count() == 0
    assert list(OrderEvent.objects.values_list("type", flat=True)) == ["order.payment_failed"]


def test_a_retry_with_the_same_key_returns_the_same_order_and_charges_once():
    first = place()
    again = place()
    assert again.id == first.id
    assert Order.objects.count() == 1
    assert Payment.objects.count() == 1
    assert OrderEvent.objects.count() == 1


def test_only_a_retry_is_reported_as_replayed():
    arguments = {
        "customer_id": CUSTOMER,
        "idempotency_key": "order-key-replay",
        "currency": "EUR",
        "lines": LINES,
        "payment_method": "pm_card_visa",
        "customer_email": "ada@example.com",
    }
    assert [services.order_create(**arguments).replayed for _ in range(2)] == [False, True]


def test_the_same_key_for_a_different_order_is_422_and_changes_nothing():
    place()
    with pytest.raises(UnprocessableEntity) as error:
        place(lines=[{"sku": "OTHER", "quantity": 1, "unit_price": 1}])
    assert error.value.detail.code == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert Payment.objects.count() == 1


def test_keys_are_per_customer():
    place()
    other = place(customer_id=str(uuid.uuid4()))
    assert Order.objects.count() == 2
    assert other.status == "paid"


def test_payments_down_leaves_the_order_pending_uncharged_and_a_retry_settles_it(settings):
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(services.PaymentsUnavailable) as error:
        place()
    order = Order.objects.get()
    assert error.value.extensions == {"order_id": str(order.id), "order_status": "pending"}
    assert (order.status, order.payment_id, order.payment_lease_until) == ("pending", None, None)
    assert Payment.objects.count() == 0
    assert OrderEvent.objects.count() == 0

    settings.PAYMENTS_URL = reachable
    settled = place()
    assert (settled.id, settled.status) == (order.id, "paid")
    assert Payment.objects.count() == 1


def test_a_retry_while_another_request_holds_the_payment_lease_is_409():
    order = place()
    Order.objects.filter(pk=order.pk).update(
        status="pending", payment_lease_until=timezone.now() + timedelta(seconds=30)
    )
    with pytest.raises(Conflict) as error:
        place()
    assert error.value.detail.code == "idempotency_key_in_use"
    assert Payment.objects.count() == 1


def test_pending_orders_nobody_retried_are_settled_by_the_settle_command_service(settings):
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    with pytest.raises(services.PaymentsUnavailable):
        place()
    settings.PAYMENTS_URL = reachable
    report = services.orders_unsettled_settle(older_than=timedelta(0))
    assert (report.settled, report.still_open, report.stopped) == (1, 0, False)
    assert Order.objects.get().status == "paid"
    assert Payment.objects.count() == 1


def test_cancelling_a_paid_order_refunds_it_in_full_once():
    order = place()
    cancelled = services.order_cancel(order=order)
    again = services.order_cancel(order=Order.objects.get())
    refund = Refund.objects.get()
    assert (cancelled.status, cancelled.refunded_amount, cancelled.refund_id) == ("cancelled", 2800, refund.id)
    assert again.status == "cancelled"
    assert refund.amount == 2800
    assert Payment.objects.get().refunded_amount == 2800
    assert history(cancelled) == [
        ("", "pending"),
        ("pending", "paid"),
        ("paid", "cancelling"),
        ("cancelling", "cancelled"),
    ]
    assert list(OrderEvent.objects.order_by("created_at").values_list("type", flat=True)) == [
        "order.paid",
        "order.cancelled",
    ]
    assert list(PaymentEvent.objects.values_list("type", flat=True)) == ["payment.refunded"]


def test_cancelling_a_failed_order_refunds_nothing():
    order = services.order_cancel(order=place(payment_method="pm_card_declined"))
    assert (order.status, order.refunded_amount, order.refund_id) == ("cancelled", 0, None)
    assert Refund.objects.count() == 0


def test_cancelling_a_pending_order_is_409(settings):
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    with pytest.raises(services.PaymentsUnavailable):
        place()
    settings.PAYMENTS_URL = reachable
    with pytest.raises(Conflict) as error:
        services.order_cancel(order=Order.objects.get())
    assert error.value.detail.code == "payment_pending"
    assert Order.objects.get().status == "pending"


def test_cancelling_while_payments_is_down_records_the_intent_and_the_settle_job_refunds_once(settings):
    order = place()
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    cancelling = services.order_cancel(order=order)
    assert (cancelling.status, cancelling.payment_lease_until, cancelling.refund_id) == ("cancelling", None, None)
    assert Refund.objects.count() == 0
    assert list(OrderEvent.objects.values_list("type", flat=True)) == ["order.paid"]

    settings.PAYMENTS_URL = reachable
    report = services.orders_unsettled_settle(older_than=timedelta(0))
    order.refresh_from_db()
    assert (report.settled, order.status, order.refunded_amount, order.refund_id) == (
        1,
        "cancelled",
        2800,
        Refund.objects.get().id,
    )
    assert history(order)[-2:] == [("paid", "cancelling"), ("cancelling", "cancelled")]
    assert services.orders_unsettled_settle(older_than=timedelta(0)).settled == 0
    assert Refund.objects.count() == 1


def _refund_in_flight_at_payments(order: Order, *, locked_for: timedelta) -> IdempotencyRecord:
    """What payments holds while another request's refund of this order is under way."""
    path = f"/api/payments/{order.payment_id}/refund/"
    return IdempotencyRecord.objects.create(
        client_id="orders",
        key=f"order-{order.id}-refund",
        request_fingerprint=request_fingerprint(
            method="POST", path=path, body={"amount": None, "reason": "order cancelled"}
        ),
        operation="refund",
        request_body={"payment_id": str(order.payment_id), "amount": None, "reason": "order cancelled"},
        locked_until=timezone.now() + locked_for,
    )


def test_a_refund_payments_still_has_in_flight_means_in_progress_not_stays_paid():
    order = place()
    record = _refund_in_flight_at_payments(order, locked_for=timedelta(seconds=30))
    cancelling = services.order_cancel(order=order)
    assert (cancelling.status, cancelling.payment_error) == ("cancelling", "")
    assert Refund.objects.count() == 0

    IdempotencyRecord.objects.filter(pk=record.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    again = services.order_cancel(order=Order.objects.get())
    assert (again.status, again.refunded_amount) == ("cancelled", 2800)
    assert Refund.objects.count() == 1


def test_a_refund_payments_refuses_stays_cancelling_with_the_reason():
    order = place()
    Payment.objects.filter(pk=order.payment_id).update(refunded_amount=2800)  # refunded elsewhere already
    cancelling = services.order_cancel(order=order)
    assert cancelling.status == "cancelling"
    assert cancelling.payment_error.startswith("payments answered 409 already_refunded: ")
    assert Refund.objects.count() == 0


def test_the_settle_command_reports_what_it_settled(settings, capsys):
    from django.core.management import call_command

    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    with pytest.raises(services.PaymentsUnavailable):
        place()
    call_command("order_payments_settle", "--older-than", "0")
    assert capsys.readouterr().out.strip() == "settled 0, still open 1; stopped: payments is not answering"
    settings.PAYMENTS_URL = reachable
    call_command("order_payments_settle", "--older-than", "0")
    assert capsys.readouterr().out.strip() == "settled 1, still open 0"
    assert Order.objects.get().status == "paid"


def _pending(count: int, settings) -> list[Order]:
    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    for number in range(count):
        with pytest.raises(services.PaymentsUnavailable):
            place(key=f"pending-{number}")
    settings.PAYMENTS_URL = reachable
    return list(Order.objects.order_by("created_at"))


def test_the_settle_job_takes_the_longest_unasked_first_and_stops_at_the_first_unreachable_answer(settings):
    orders = _pending(3, settings)
    now = timezone.now()
    for minutes, order in zip((5, 30, 10), orders, strict=True):
        Order.objects.filter(pk=order.pk).update(payment_attempted_at=now - timedelta(minutes=minutes))
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    report = services.orders_unsettled_settle(older_than=timedelta(minutes=1))
    assert (report.settled, report.still_open, report.stopped) == (0, 1, True)
    attempted = {order.pk: order.payment_attempted_at for order in Order.objects.all()}
    assert attempted[orders[1].pk] > now - timedelta(seconds=5)  # asked again just now
    assert attempted[orders[0].pk] < now - timedelta(minutes=4)  # not reached
    assert attempted[orders[2].pk] < now - timedelta(minutes=9)


def test_the_settle_job_leaves_an_order_another_request_holds(settings):
    (order,) = _pending(1, settings)
    Order.objects.filter(pk=order.pk).update(payment_lease_until=timezone.now() + timedelta(seconds=30))
    report = services.orders_unsettled_settle(older_than=timedelta(0))
    assert (report.settled, report.still_open) == (0, 0)
    assert Payment.objects.count() == 0


def test_the_settle_job_leaves_orders_asked_about_recently(settings):
    _pending(1, settings)
    assert services.orders_unsettled_settle(older_than=timedelta(minutes=1)).still_open == 0
    assert Order.objects.get().status == "pending"


def test_a_charge_payments_refuses_ends_in_payment_refused_with_the_reason_and_no_charge(settings):
    from apps.core.testing import service_client_provision

    service_client_provision(
        client_id="orders", secret=settings.SERVICE_CLIENT_SECRET, scopes=["payments:refund", "notifications:publish"]
    )
    service_calls.service_token.forget()
    order = place()
    assert order.status == "payment_refused"
    assert order.payment_error.startswith("payments answered 403 ")
    assert (order.payment_id, Payment.objects.count()) == (None, 0)
    assert history(order) == [("", "pending"), ("pending", "payment_refused")]
    assert list(OrderEvent.objects.values_list("type", flat=True)) == ["order.payment_refused"]
    assert place().status == "payment_refused"  # a retry is a replay: refused for good
    assert services.order_cancel(order=Order.objects.get()).status == "cancelled"


class _Answers(BaseHTTPRequestHandler):
    """A payments stand-in that answers every charge 201 with the body it is given."""

    body = b"{}"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "not-a-uuid", "status": "succeeded"}',
        b'{"id": "00000000-0000-4000-8000-000000000001", "status": "declined", "decline_code": null}',
    ],
    ids=["not-json", "array", "bad-id", "null-decline-code"],
)
def test_an_unusable_answer_from_payments_is_a_502_and_the_order_stays_pending(settings, body):
    handler = type("Handler", (_Answers,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.PAYMENTS_URL = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(services.PaymentsBadAnswer) as error:
            place()
    finally:
        service_calls.sessions_close()
        server.shutdown()
    order = Order.objects.get()
    assert error.value.status_code == 502
    assert (order.status, order.payment_id, order.payment_lease_until) == ("pending", None, None)
    assert OrderEvent.objects.count() == 0


def test_an_order_the_database_would_refuse_is_a_validation_error_not_an_integrity_error():
    with pytest.raises(ValidationError) as error:
        place(lines=[{"sku": "GOLD", "quantity": 10_000, "unit_price": 10**12}])
    assert "order_total_at_most_max" in str(error.value)
    assert Order.objects.count() == 0


def test_a_lease_is_released_only_by_its_holder():
    order = place(payment_method="pm_card_declined")
    theirs = timezone.now() + timedelta(seconds=30)
    Order.objects.filter(pk=order.pk).update(payment_lease_until=theirs)
    services._lease_release(order, timezone.now())
    assert Order.objects.get().payment_lease_until == theirs
    services._lease_release(order, theirs)
    assert Order.objects.get().payment_lease_until is None


def test_no_call_to_auth_places_an_order(settings):
    service_calls.service_token.get()  # orders' own token, fetched before auth goes away
    settings.AUTH_URL = "http://127.0.0.1:9"
    assert place().status == "paid"


def test_an_unexpected_failure_while_settling_never_leaves_the_order_locked(monkeypatch):
    def broken(order):
        raise RuntimeError("bug")

    monkeypatch.setattr(services.payments_client, "charge", broken)
    with pytest.raises(RuntimeError):
        place()
    assert Order.objects.get().payment_lease_until is None
    monkeypatch.undo()
    assert place().status == "paid"


def _placed(outcome: str) -> float:
    return services.ORDERS_PLACED.labels(outcome=outcome)._value.get()


def test_an_order_is_counted_once_by_its_outcome_whoever_decides_it(settings, django_capture_on_commit_callbacks):
    outcomes = ("paid", "payment_failed", "payment_refused")
    before = [_placed(outcome) for outcome in outcomes]
    reachable = settings.PAYMENTS_URL
    with django_capture_on_commit_callbacks(execute=True):
        place(key="paid")
        place(key="paid")  # a replay decides nothing
        place(key="declined", payment_method="pm_card_declined")
        settings.PAYMENTS_URL = "http://127.0.0.1:9"
        with pytest.raises(services.PaymentsUnavailable):
            place(key="undecided")  # pending: not counted until decided
        undecided = [_placed(outcome) for outcome in outcomes]
        settings.PAYMENTS_URL = reachable
        services.orders_unsettled_settle(older_than=timedelta(0))  # the settle job decides it
    after = [_placed(outcome) for outcome in outcomes]
    assert [b - a for a, b in zip(before, undecided, strict=True)] == [1, 1, 0]
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 0]
