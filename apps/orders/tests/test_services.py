import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import Conflict, UnprocessableEntity
from apps.orders import services
from apps.orders.models import Order, OrderEvent
from apps.payments.models import Payment, PaymentEvent, Refund

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
    assert services.orders_pending_settle(older_than=timedelta(0)) == {"settled": 1, "still_pending": 0}
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
    assert history(cancelled) == [("", "pending"), ("pending", "paid"), ("paid", "cancelled")]
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


def test_cancelling_while_payments_is_down_keeps_the_order_paid(settings):
    order = place()
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    with pytest.raises(services.PaymentsUnavailable):
        services.order_cancel(order=order)
    order.refresh_from_db()
    assert (order.status, order.payment_lease_until) == ("paid", None)
    assert Refund.objects.count() == 0
    assert list(OrderEvent.objects.values_list("type", flat=True)) == ["order.paid"]


def test_the_settle_command_reports_what_it_settled(settings, capsys):
    from django.core.management import call_command

    reachable = settings.PAYMENTS_URL
    settings.PAYMENTS_URL = "http://127.0.0.1:9"
    with pytest.raises(services.PaymentsUnavailable):
        place()
    call_command("order_payments_settle", "--older-than", "0")
    assert capsys.readouterr().out.strip() == "settled 0, still pending 1"
    settings.PAYMENTS_URL = reachable
    call_command("order_payments_settle", "--older-than", "0")
    assert capsys.readouterr().out.strip() == "settled 1, still pending 0"
    assert Order.objects.get().status == "paid"
