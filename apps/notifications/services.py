"""Writes of the notifications service: accept an event once, file it in the user's inbox, email it.

Deduplication is the database's: the event id is the primary key of `ProcessedEvent`, inserted in
the same transaction as the notification. A repeated event id only counts the repeat. The email is
sent after the commit, so a rolled-back event never emails anyone.
"""

import logging
import string
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

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
    "order.cancelled": ("Order cancelled", "Order {order_id} was cancelled. Refunded: {refunded_amount}."),
    "payment.refunded": ("Refund issued", "{amount} was refunded for order {order_id}."),
}
AMOUNT_KEYS = ("total", "amount", "refunded_amount")


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
                times_received=F("times_received") + 1, last_received_at=timezone.now()
            )
            return None, False
        title, body = _render(event_type, data)
        notification = Notification.objects.create(
            user_id=user_id, event=event, type=event_type, title=title, body=body, data=data
        )
        recipient = _recipient(data)
        if recipient:
            delivery = EmailDelivery.objects.create(notification=notification, recipient=recipient)
            transaction.on_commit(lambda: email_send(delivery_id=delivery.pk))
    return notification, True


def email_send(*, delivery_id: int) -> EmailDelivery:
    """Send a notification's email through Django's email backend and record the attempt."""
    delivery = EmailDelivery.objects.select_related("notification").get(pk=delivery_id)
    if delivery.status == EmailDelivery.Status.SENT:
        return delivery
    delivery.attempts += 1
    try:
        send_mail(
            subject=delivery.notification.title,
            message=delivery.notification.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[delivery.recipient],
        )
    except Exception as error:  # SMTP refusals, timeouts: recorded, the inbox entry stands
        logger.warning("email not sent", extra={"delivery_id": delivery.pk, "error": str(error)})
        delivery.status = EmailDelivery.Status.FAILED
        delivery.last_error = f"{error.__class__.__name__}: {error}"[:2000]
    else:
        delivery.status = EmailDelivery.Status.SENT
        delivery.sent_at = timezone.now()
        delivery.last_error = ""
    delivery.save(update_fields=["attempts", "status", "last_error", "sent_at"])
    return delivery


def notification_mark_read(*, notification: Notification) -> Notification:
    """Mark read; marking again keeps the first time."""
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=timezone.now())
        notification.refresh_from_db(fields=["read_at"])
    return notification
