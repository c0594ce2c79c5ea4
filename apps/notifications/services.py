"""Writes of the notifications service: accept an event once, file it in the user's inbox, email it.

Deduplication is the database's: the event id is the primary key of `ProcessedEvent`, inserted in
the same transaction as the notification. A repeated event id only counts the repeat. Event ids are
kept for the dedup window (`processed_events_prune`), far longer than any outbox keeps redelivering.

The email is not sent by the request that accepts the event: that transaction only queues an
`EmailDelivery`, so the event is answered 202 whatever the mail relay does. The email worker
(`manage.py email_deliver`, a worker of `apps.core.work_queue` like the outbox relays) sends due
emails with retries and exponential backoff, stops a batch at the first mail relay that does not
answer, and records each attempt only while it holds the email. Each email carries a Message-ID
derived from its delivery, so a resend after a crash between sending and recording is recognisable.
"""

import contextlib
import logging
import smtplib
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.core import metrics, tracing, work_queue
from apps.core.money import CURRENCIES, amount_format
from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent

logger = logging.getLogger(__name__)

# Title and body per event type; {placeholders} come from the event's data (amounts formatted).
TEMPLATES = {
    "order.paid": ("Order paid", "We received {total} for order {order_id}. Thank you!"),
    "order.payment_failed": (
        "Payment failed",
        "The payment of {total} for order {order_id} was declined ({decline_code}). Nothing was charged.",
    ),
    "order.payment_refused": (
        "Order not placed",
        "The payment of {total} for order {order_id} could not be taken ({reason}). Nothing was charged.",
    ),
    "order.cancelled": ("Order cancelled", "Order {order_id} was cancelled. Refunded: {refunded_amount}."),
    "payment.refunded": ("Refund issued", "{amount} was refunded for order {order_id}."),
}
AMOUNT_KEYS = ("total", "amount", "refunded_amount")

EVENTS_RECEIVED = metrics.counter(
    "notifications_events_received",
    "Events received, by whether they were new or a duplicate of one already filed (deduplicated by event id).",
    {"result": ("new", "duplicate")},
)
EMAIL_OUTCOMES = ("sent", "retry", "failed", "lost")
EMAIL_DELIVERIES = metrics.counter(
    "notifications_email_deliveries",
    "Email send attempts by outcome: sent; retry; failed (refused, or out of attempts); lost (lease passed on).",
    {"outcome": EMAIL_OUTCOMES},
)


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _render(event_type: str, data: dict) -> tuple[str, str]:
    title, body = TEMPLATES.get(event_type, (event_type, "Event {event_type}."))
    values = _Placeholders({key: value for key, value in data.items() if isinstance(value, str | int)})
    currency = data.get("currency")
    for key in AMOUNT_KEYS:
        if isinstance(data.get(key), int) and currency in CURRENCIES:
            values[key] = amount_format(data[key], currency)
    values["event_type"] = event_type
    return title, string.Formatter().vformat(body, (), values)[:2000]


def _recipient(data: dict) -> str:
    email = data.get("email")
    if not isinstance(email, str) or not email:
        return ""
    try:
        validate_email(email)
    except ValidationError:
        return ""
    return email


def event_accept(
    *, event_id: uuid.UUID, event_type: str, user_id: uuid.UUID, data: dict, source: str
) -> tuple[Notification | None, bool]:
    """File the event in the user's inbox; (notification, True) the first time, (None, False) after."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = ProcessedEvent.objects.create(event_id=event_id, type=event_type, source=source)
        except IntegrityError:
            ProcessedEvent.objects.filter(pk=event_id).update(
                times_received=F("times_received") + 1, last_received_at=Now()
            )
            metrics.count_after_commit(EVENTS_RECEIVED, result="duplicate")
            return None, False
        title, body = _render(event_type, data)
        notification = Notification.objects.create(
            user_id=user_id, event=event, type=event_type, title=title, body=body, data=data
        )
        recipient = _recipient(data)
        if recipient:  # queued; the email worker sends it
            EmailDelivery.objects.create(
                notification=notification,
                recipient=recipient,
                available_at=Now(),
                traceparent=tracing.traceparent(),
            )
        metrics.count_after_commit(EVENTS_RECEIVED, result="new")
    return notification, True


# SMTP exchanges of one send (connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the message,
# QUIT), each bounded by EMAIL_TIMEOUT: the worker's lease on an email outlasts all of them.
SMTP_EXCHANGES = 10
LEASE_MARGIN_SECONDS = 10.0


def email_send_budget_seconds() -> float:
    """The slowest send: every exchange taking its whole timeout."""
    return settings.EMAIL_TIMEOUT * SMTP_EXCHANGES


def email_lease_seconds() -> float:
    return email_send_budget_seconds() + LEASE_MARGIN_SECONDS


@dataclass(frozen=True)
class SendResult:
    sent: bool
    error: str = ""
    permanent: bool = False  # the mail server refused this email for good (5xx for it)
    answered: bool = True  # False: the mail relay could not be reached or dropped the connection


def _message_id(delivery: EmailDelivery) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "notifications.local"
    return f"<notification-email-{delivery.pk}@{domain}>"


def email_send(*, delivery: EmailDelivery) -> SendResult:
    """Send one email through Django's email backend, the answer sorted for the worker."""
    message = EmailMessage(
        subject=delivery.notification.title,
        body=delivery.notification.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.recipient],
        headers={"Message-ID": _message_id(delivery)},
    )
    connection = get_connection()
    try:
        connection.open()
        sent = connection.send_messages([message])
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        return SendResult(
            sent=False, error=f"recipient refused: {error.recipients}"[:2000], permanent=min(codes) >= 500
        )
    except (smtplib.SMTPConnectError, smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected) as error:
        return SendResult(sent=False, error=f"{error.__class__.__name__}: {error}"[:2000], answered=False)
    except smtplib.SMTPResponseException as error:  # the server answered this email with an error
        return SendResult(
            sent=False, error=f"{error.smtp_code} {error.smtp_error!r}"[:2000], permanent=error.smtp_code >= 500
        )
    except OSError as error:  # refused, unreachable, timed out
        return SendResult(sent=False, error=f"{error.__class__.__name__}: {error}"[:2000], answered=False)
    finally:
        with contextlib.suppress(Exception):  # the email is out (or not) whatever QUIT answers
            connection.close()
    return SendResult(sent=True) if sent else SendResult(sent=False, error="the backend sent nothing")


@dataclass
class EmailBatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    interrupted: bool = False


def _due() -> Q:
    return Q(status=EmailDelivery.Status.PENDING, available_at__isnull=False)


def _record(delivery: EmailDelivery, result: SendResult, *, worker: str, backoff, max_attempts: int) -> str:
    attempts = delivery.attempts + 1
    changes = {"attempts": F("attempts") + 1, "last_attempt_at": Now()}
    if result.sent:
        changes.update(status=EmailDelivery.Status.SENT, sent_at=Now(), last_error="")
        outcome = "sent"
    elif result.permanent or attempts >= max_attempts:
        reason = result.error if result.permanent else f"gave up after {attempts} attempts: {result.error}"
        changes.update(status=EmailDelivery.Status.FAILED, last_error=reason[:2000])
        outcome = "failed"
    else:
        changes.update(last_error=result.error, available_at=work_queue.in_seconds(backoff(attempts)))
        outcome = "retry"
    if not work_queue.record(EmailDelivery, delivery.pk, worker=worker, **changes):
        outcome = "lost"
    EMAIL_DELIVERIES.labels(outcome=outcome).inc()
    log = logger.info if outcome == "sent" else logger.warning
    log("email %s", outcome, extra={"delivery_id": delivery.pk, "attempts": attempts, "error": result.error[:200]})
    return outcome


def email_deliveries_send(
    *,
    worker: str,
    should_stop: Callable[[], bool] = lambda: False,
    send: Callable[..., SendResult] = email_send,
    batch_size: int = 20,
    max_attempts: int = 12,
    backoff_base: float = 10.0,
    backoff_max: float = 600.0,
) -> EmailBatchReport:
    """Claim a batch of due emails and send them one by one (see the module docstring)."""
    lease = work_queue.BatchLease(email_lease_seconds())
    budget = email_send_budget_seconds()
    report = EmailBatchReport()
    due = EmailDelivery.objects.filter(_due())
    ids = work_queue.claim(due, worker=worker, batch_size=batch_size, lease_seconds=lease.seconds)
    report.claimed = len(ids)
    deliveries = EmailDelivery.objects.select_related("notification").in_bulk(ids)
    for position, pk in enumerate(ids):
        if should_stop():
            report.interrupted = True
            report.released += work_queue.release(EmailDelivery, ids[position:], worker=worker)
            break
        if not work_queue.lease_hold(EmailDelivery, pk, worker=worker, lease=lease, work_seconds=budget):
            report.lost += 1
            continue
        delivery = deliveries[pk]
        with tracing.email_span(
            parent_traceparent=delivery.traceparent, delivery_id=pk, attempt=delivery.attempts + 1
        ) as span:
            try:
                result = send(delivery=delivery)
            except Exception as error:  # a bug must not stop the worker or lose the email
                logger.exception("email send raised", extra={"delivery_id": pk})
                result = SendResult(sent=False, error=f"{error.__class__.__name__}: {error}")
            outcome = _record(
                delivery,
                result,
                worker=worker,
                backoff=lambda n: work_queue.backoff_seconds(n, base=backoff_base, maximum=backoff_max),
                max_attempts=max_attempts,
            )
            tracing.email_span_finish(span, outcome=outcome)
        report.sent += outcome == "sent"
        report.retried += outcome == "retry"
        report.failed += outcome == "failed"
        report.lost += outcome == "lost"
        if not result.answered:
            report.interrupted = True
            report.released += work_queue.release(EmailDelivery, ids[position + 1 :], worker=worker)
            break
    return report


def email_delivery_retry(*, delivery_ids: list) -> int:
    """Queue emails that were not sent to go out again now, with a fresh count of attempts (an
    operator's decision). An email a worker holds right now keeps its lease."""
    return (
        EmailDelivery.objects.filter(pk__in=delivery_ids)
        .exclude(status=EmailDelivery.Status.SENT)
        .filter(Q(claimed_by="") | Q(available_at__isnull=True) | Q(available_at__lte=Now()))
        .update(status=EmailDelivery.Status.PENDING, attempts=0, available_at=Now(), claimed_by="")
    )


def processed_events_prune(*, older_than: timedelta, chunk_size: int = 1000) -> int:
    """Forget event ids last received more than `older_than` ago (the dedup window): their inbox
    entries stay. An event redelivered after that would be filed again, so the window must exceed
    the longest an outbox keeps redelivering an event (its backoff cap times the outage it rides out)."""
    deleted = 0
    while True:
        chunk = list(
            ProcessedEvent.objects.filter(last_received_at__lt=Now() - older_than).values_list("pk", flat=True)[
                :chunk_size
            ]
        )
        if not chunk:
            return deleted
        with transaction.atomic():
            Notification.objects.filter(event_id__in=chunk).update(event=None)
            deleted += ProcessedEvent.objects.filter(pk__in=chunk).delete()[0]


def notification_mark_read(*, notification: Notification) -> Notification:
    """Mark read; marking again keeps the first time."""
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=timezone.now())
        notification.refresh_from_db(fields=["read_at"])
    return notification


def _email_backlog_gauges() -> list:
    emails, age = metrics.backlog(EmailDelivery.objects.filter(_due()))
    return [
        metrics.gauge("notifications_pending_emails", "Emails queued and not yet sent nor failed.", [({}, emails)]),
        metrics.gauge(
            "notifications_oldest_pending_email_age_seconds",
            "Age of the oldest email not yet sent nor failed; 0 when there is none.",
            [({}, age)],
        ),
    ]


def notifications_state_register() -> None:
    """The email backlog in every scrape of the notifications web process."""
    metrics.state_reader_register("emails", _email_backlog_gauges)
