import uuid

import pytest
from django.core import mail
from django.test import override_settings

from apps.notifications import services
from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
EVENT = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
PAID = {"order_id": "o-1", "total": 2800, "currency": "EUR", "email": "ada@example.com", "payment_id": "p-1"}


def accept(event_id=EVENT, event_type="order.paid", data=PAID):
    return services.event_accept(event_id=event_id, event_type=event_type, user_id=USER, data=data, source="orders")


def test_an_event_becomes_one_notification_and_one_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notification, created = accept()
    assert created is True
    assert (notification.user_id, notification.type, notification.title) == (USER, "order.paid", "Order paid")
    assert notification.body == "We received 28.00 EUR for order o-1. Thank you!"
    assert len(mail.outbox) == 1
    assert (mail.outbox[0].subject, mail.outbox[0].to) == ("Order paid", ["ada@example.com"])
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.recipient) == ("sent", 1, "ada@example.com")


def test_a_repeated_event_id_changes_nothing_but_is_counted(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        accept()
    with django_capture_on_commit_callbacks(execute=True):
        notification, created = accept(data={**PAID, "total": 1})
    assert (notification, created) == (None, False)
    assert Notification.objects.count() == 1
    assert Notification.objects.get().body == "We received 28.00 EUR for order o-1. Thank you!"
    assert len(mail.outbox) == 1
    assert ProcessedEvent.objects.get().times_received == 2


def test_no_email_address_means_an_inbox_entry_and_no_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        accept(data={**PAID, "email": "not-an-address"})
    assert Notification.objects.count() == 1
    assert EmailDelivery.objects.count() == 0
    assert mail.outbox == []


@override_settings(EMAIL_BACKEND="apps.notifications.tests.test_services.RefusingBackend")
def test_an_email_the_backend_refuses_is_recorded_as_failed_and_the_notification_stays(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        accept()
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        1,
        "ConnectionRefusedError: smtp down",
    )
    assert Notification.objects.count() == 1


class RefusingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


@pytest.mark.parametrize(
    ("event_type", "data", "body"),
    [
        (
            "order.payment_failed",
            {"order_id": "o-1", "total": 500, "currency": "JPY", "decline_code": "card_declined"},
            "The payment of 500 JPY for order o-1 was declined (card_declined). Nothing was charged.",
        ),
        (
            "order.cancelled",
            {"order_id": "o-1", "refunded_amount": 2800, "currency": "EUR"},
            "Order o-1 was cancelled. Refunded: 28.00 EUR.",
        ),
        (
            "payment.refunded",
            {"order_id": "o-1", "amount": 5, "currency": "USD"},
            "0.05 USD was refunded for order o-1.",
        ),
        ("order.shipped", {}, "Event order.shipped."),
        ("order.paid", {}, "We received ? for order ?. Thank you!"),
    ],
)
def test_bodies_per_event_type(event_type, data, body):
    notification, _ = accept(event_type=event_type, data=data)
    assert notification.body == body


def test_marking_read_twice_keeps_the_first_time():
    notification, _ = accept()
    first = services.notification_mark_read(notification=notification).read_at
    again = services.notification_mark_read(notification=Notification.objects.get()).read_at
    assert first is not None
    assert again == first
