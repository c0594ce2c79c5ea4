import smtplib
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.db.models.functions import Now
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications import services
from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
EVENT = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
PAID = {"order_id": "o-1", "total": 2800, "currency": "EUR", "email": "ada@example.com", "payment_id": "p-1"}


def accept(event_id=EVENT, event_type="order.paid", data=PAID):
    return services.event_accept(event_id=event_id, event_type=event_type, user_id=USER, data=data, source="orders")


def send_due(**options) -> services.EmailBatchReport:
    return services.email_deliveries_send(worker="w1", **options)


def test_an_event_becomes_one_notification_and_a_queued_email_the_worker_sends(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notification, created = accept()
    assert created is True
    assert (notification.user_id, notification.type, notification.title) == (USER, "order.paid", "Order paid")
    assert notification.body == "We received 28.00 EUR for order o-1. Thank you!"
    assert mail.outbox == []  # accepting the event sends nothing
    assert EmailDelivery.objects.get().status == "pending"

    report = send_due()
    assert (report.claimed, report.sent) == (1, 1)
    assert len(mail.outbox) == 1
    assert (mail.outbox[0].subject, mail.outbox[0].to) == ("Order paid", ["ada@example.com"])
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.recipient, delivery.claimed_by) == (
        "sent",
        1,
        "ada@example.com",
        "",
    )
    assert mail.outbox[0].extra_headers["Message-ID"] == f"<notification-email-{delivery.pk}@platform.local>"
    assert send_due().claimed == 0
    assert len(mail.outbox) == 1


def test_a_repeated_event_id_changes_nothing_but_is_counted():
    accept()
    notification, created = accept(data={**PAID, "total": 1})
    assert (notification, created) == (None, False)
    assert Notification.objects.count() == 1
    assert Notification.objects.get().body == "We received 28.00 EUR for order o-1. Thank you!"
    assert EmailDelivery.objects.count() == 1
    assert ProcessedEvent.objects.get().times_received == 2


def test_no_email_address_means_an_inbox_entry_and_no_email():
    accept(data={**PAID, "email": "not-an-address"})
    assert Notification.objects.count() == 1
    assert EmailDelivery.objects.count() == 0


class RefusingBackend:
    """A mail relay nobody answers at (connection refused)."""

    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        raise ConnectionRefusedError("smtp down")

    def close(self):
        pass

    def send_messages(self, messages):
        raise AssertionError("not reached")


class RejectingBackend(RefusingBackend):
    """A mail relay that answers, refusing the recipient for good (550)."""

    def open(self):
        return True

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({"ada@example.com": (550, b"no such mailbox")})


class BusyBackend(RejectingBackend):
    """A mail relay that answers, asking to try later (451)."""

    def send_messages(self, messages):
        raise smtplib.SMTPDataError(451, b"try again later")


def _events(count: int) -> None:
    for number in range(count):
        accept(event_id=uuid.UUID(int=number + 1))


@override_settings(EMAIL_BACKEND="apps.notifications.tests.test_services.RefusingBackend")
def test_a_mail_relay_that_does_not_answer_stops_the_batch_and_the_email_is_retried_later():
    _events(3)
    report = send_due(backoff_base=60, backoff_max=60)
    assert (report.claimed, report.retried, report.released, report.interrupted) == (3, 1, 2, True)
    tried = EmailDelivery.objects.get(attempts=1)
    assert (tried.status, tried.last_error) == ("pending", "ConnectionRefusedError: smtp down")
    assert tried.available_at > timezone.now() + timedelta(seconds=25)
    assert list(EmailDelivery.objects.exclude(pk=tried.pk).values_list("attempts", "claimed_by")) == [(0, ""), (0, "")]
    assert Notification.objects.count() == 3


@override_settings(EMAIL_BACKEND="apps.notifications.tests.test_services.RejectingBackend")
def test_a_recipient_the_mail_server_refuses_for_good_is_failed_at_once():
    _events(2)
    report = send_due()
    assert (report.failed, report.interrupted) == (2, False)
    assert set(EmailDelivery.objects.values_list("status", "attempts")) == {("failed", 1)}


@override_settings(EMAIL_BACKEND="apps.notifications.tests.test_services.BusyBackend")
def test_an_email_is_failed_after_its_last_attempt():
    accept()
    for _ in range(3):
        EmailDelivery.objects.update(available_at=Now())
        send_due(max_attempts=3)
    delivery = EmailDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error.startswith("gave up after 3 attempts: 451")
    assert services.email_delivery_retry(delivery_ids=[delivery.pk]) == 1
    assert EmailDelivery.objects.values_list("status", "attempts").get() == ("pending", 0)


def test_the_stop_signal_is_looked_at_before_each_email():
    _events(3)
    report = send_due(should_stop=lambda: len(mail.outbox) >= 1)
    assert (report.sent, report.released, report.interrupted) == (1, 2, True)
    assert EmailDelivery.objects.filter(status="pending", claimed_by="").count() == 2


def test_emails_sent_while_the_claims_lease_covers_a_send_renew_no_lease():
    _events(3)
    with CaptureQueriesContext(connection) as captured:
        report = send_due()
    assert report.sent == 3
    updates = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("UPDATE")]
    # The claim's lease of the three, then each one's record: no lease renewed one by one.
    assert len(updates) == 4, updates


def test_a_worker_whose_lease_passed_to_another_does_not_record():
    accept()

    def send(*, delivery):
        EmailDelivery.objects.filter(pk=delivery.pk).update(claimed_by="w2")
        return services.SendResult(sent=True)

    assert send_due(send=send).lost == 1
    assert EmailDelivery.objects.values_list("status", "claimed_by").get() == ("pending", "w2")


def test_rows_of_the_previous_release_are_never_taken():
    accept()
    EmailDelivery.objects.update(available_at=None)
    assert send_due().claimed == 0


def test_event_ids_past_the_dedup_window_are_forgotten_and_their_inbox_entries_stay():
    accept(event_id=uuid.UUID(int=1))
    accept(event_id=uuid.UUID(int=2))
    ProcessedEvent.objects.filter(pk=uuid.UUID(int=1)).update(last_received_at=timezone.now() - timedelta(days=31))
    assert services.processed_events_prune(older_than=timedelta(days=30)) == 1
    assert list(ProcessedEvent.objects.values_list("pk", flat=True)) == [uuid.UUID(int=2)]
    assert Notification.objects.count() == 2
    assert Notification.objects.filter(event__isnull=True).count() == 1


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
        (
            "order.payment_refused",
            {"order_id": "o-1", "total": 500, "currency": "EUR", "reason": "refused"},
            "The payment of 5.00 EUR for order o-1 could not be taken (refused). Nothing was charged.",
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


def test_a_duplicate_event_is_counted_as_one_and_files_nothing(django_capture_on_commit_callbacks):
    received = services.EVENTS_RECEIVED
    before = [received.labels(result=result)._value.get() for result in ("new", "duplicate")]
    with django_capture_on_commit_callbacks(execute=True):
        accept()
        accept()
        accept()
    after = [received.labels(result=result)._value.get() for result in ("new", "duplicate")]
    assert ([b - a for a, b in zip(before, after, strict=True)], Notification.objects.count()) == ([1, 2], 1)
