"""Transactional outbox: events written in the same transaction as the state change, and the relay
that delivers them afterwards over HTTP, at least once, with retries and exponential backoff.

Each service that emits events has a concrete subclass of `OutboxEvent` in its own app (so in its
own database); `outbox_event_add()` writes a row inside the caller's transaction, and
`manage.py outbox_relay` runs `relay_batch()` in a loop for every concrete outbox model installed.

Claiming: a relay takes a batch of due rows in one short transaction and leases them by moving
`available_at` forward (`lease_seconds`) and writing its own id into `claimed_by`. On PostgreSQL the
batch is selected with `SELECT ... FOR UPDATE SKIP LOCKED`, so two relays never take the same row
and neither waits for the other. SQLite has no row locks (Django ignores select_for_update there);
the settings open every transaction with BEGIN IMMEDIATE, which takes the database's write lock
before the SELECT, so the select-and-lease is serialized across processes: the safe equivalent.
Delivery happens after that commit, never inside an open transaction. A relay that dies mid-batch
only delays its rows until the lease runs out; then another relay takes them. A lease that runs out
while a slow delivery is still under way can lead to a second delivery: consumers deduplicate by
`event_id` (notifications does), which is what at-least-once requires of them anyway.
"""

from __future__ import annotations

import logging
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from apps.core import service_calls

logger = logging.getLogger(__name__)

# HTTP answers after which a retry cannot succeed: the event itself is refused. Anything else
# (no answer, 5xx, 401/403 while credentials are being fixed, 408, 409, 429) is retried.
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 413, 415, 422})


class OutboxEvent(models.Model):
    """One event to deliver. `id` is the event id consumers deduplicate on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=64)  # order.paid, payment.refunded, ...
    user_id = models.UUIDField(db_index=True)  # whose inbox the event is for
    aggregate_id = models.UUIDField(db_index=True)  # the order or payment it is about
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_default=Now())
    # Not before this time: the next retry after a failure, or the end of a relay's lease.
    available_at = models.DateTimeField(db_default=Now())
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)  # HTTP status, if any
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)  # refused for good; an operator decides

    class Meta:
        abstract = True
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["available_at"],
                name="%(app_label)s_%(class)s_due",
                condition=models.Q(delivered_at__isnull=True, failed_at__isnull=True),
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(delivered_at__isnull=True) | models.Q(failed_at__isnull=True),
                name="%(app_label)s_%(class)s_delivered_or_failed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.failed_at:
            return "failed"
        return "pending"

    def message(self) -> dict:
        """What is sent: the body of POST /api/notifications/events/."""
        return {"event_id": str(self.id), "type": self.type, "user_id": str(self.user_id), "data": self.data}


def outbox_event_add(
    model: type[OutboxEvent], *, event_type: str, user_id: uuid.UUID | str, aggregate_id: uuid.UUID | str, data: dict
) -> OutboxEvent:
    """Write an event; call it inside the transaction that makes the change the event reports."""
    if not connection.in_atomic_block:
        raise RuntimeError("outbox events are written inside the transaction of the state change")
    event = model(type=event_type, user_id=user_id, aggregate_id=aggregate_id, data=data)
    event.full_clean()
    event.save(force_insert=True)
    return event


def outbox_models() -> list[type[OutboxEvent]]:
    """Every concrete outbox model this process has installed (one per service that emits events)."""
    return [model for model in apps.get_models() if issubclass(model, OutboxEvent)]


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status: int | None = None
    error: str = ""
    permanent: bool = False


Deliver = Callable[[OutboxEvent], DeliveryResult]


def deliver_to_notifications(event: OutboxEvent) -> DeliveryResult:
    """POST the event to the notifications service with this service's client-credentials token."""
    try:
        response = service_calls.call(
            "POST",
            settings.NOTIFICATIONS_URL,
            "/api/notifications/events/",
            auth="service",
            json=event.message(),
            idempotency_key=str(event.id),  # lets the client retry the POST: the consumer deduplicates
        )
    except service_calls.ServiceCallError as error:
        return DeliveryResult(delivered=False, error=str(error))
    if 200 <= response.status_code < 300:
        return DeliveryResult(delivered=True, status=response.status_code)
    return DeliveryResult(
        delivered=False,
        status=response.status_code,
        error=response.text[:2000],
        permanent=response.status_code in PERMANENT_STATUSES,
    )


def backoff_seconds(attempts: int, *, base: float, maximum: float) -> float:
    """Exponential backoff with jitter after the `attempts`-th failure: between half and all of
    min(maximum, base * 2 ** (attempts - 1)), so relays retrying together spread out."""
    ceiling = min(maximum, base * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)


def relay_id() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def claim(model: type[OutboxEvent], *, relay: str, batch_size: int, lease_seconds: float) -> list[OutboxEvent]:
    """Lease up to `batch_size` due events to `relay`, oldest first (see the module docstring)."""
    with transaction.atomic():
        due = model.objects.filter(
            delivered_at__isnull=True, failed_at__isnull=True, available_at__lte=timezone.now()
        ).order_by("available_at", "created_at")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return []
        model.objects.filter(pk__in=ids).update(
            claimed_by=relay, available_at=timezone.now() + timedelta(seconds=lease_seconds)
        )
    return list(model.objects.filter(pk__in=ids).order_by("created_at"))


def _record(
    model: type[OutboxEvent], event: OutboxEvent, result: DeliveryResult, *, base: float, maximum: float
) -> str:
    now = timezone.now()
    attempts = event.attempts + 1
    changes = {"attempts": F("attempts") + 1, "last_attempt_at": now, "last_status": result.status, "claimed_by": ""}
    if result.delivered:
        changes.update(delivered_at=now, last_error="")
        outcome = "delivered"
    elif result.permanent:
        changes.update(failed_at=now, last_error=result.error)
        outcome = "failed"
    else:
        delay = backoff_seconds(attempts, base=base, maximum=maximum)
        changes.update(last_error=result.error, available_at=now + timedelta(seconds=delay))
        outcome = "retry"
    # Only an undelivered row changes: a relay whose lease ran out must not undo another's success.
    model.objects.filter(pk=event.pk, delivered_at__isnull=True, failed_at__isnull=True).update(**changes)
    log = logger.warning if outcome != "delivered" else logger.info
    log(
        "outbox event %s",
        outcome,
        extra={
            "event_id": str(event.id),
            "event_type": event.type,
            "attempts": attempts,
            "status": result.status,
            "error": result.error[:200],
        },
    )
    return outcome


@dataclass
class BatchReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


def relay_batch(
    model: type[OutboxEvent],
    *,
    relay: str,
    deliver: Deliver = deliver_to_notifications,
    batch_size: int = 50,
    lease_seconds: float = 60.0,
    backoff_base: float = 1.0,
    backoff_max: float = 300.0,
) -> BatchReport:
    """Claim one batch, deliver each event outside any transaction, and record every attempt."""
    report = BatchReport()
    for event in claim(model, relay=relay, batch_size=batch_size, lease_seconds=lease_seconds):
        report.claimed += 1
        try:
            result = deliver(event)
        except Exception as error:  # a bug in delivery must not stop the relay or lose the event
            logger.exception("outbox delivery raised", extra={"event_id": str(event.id)})
            result = DeliveryResult(delivered=False, error=f"{error.__class__.__name__}: {error}")
        outcome = _record(model, event, result, base=backoff_base, maximum=backoff_max)
        report.delivered += outcome == "delivered"
        report.retried += outcome == "retry"
        report.failed += outcome == "failed"
    return report


def outbox_event_retry(model: type[OutboxEvent], *, event_ids: list) -> int:
    """Make events due again now (an operator's decision after fixing the cause of a failure)."""
    return model.objects.filter(pk__in=event_ids, delivered_at__isnull=True).update(
        failed_at=None, available_at=timezone.now(), claimed_by=""
    )
