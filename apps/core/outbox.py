"""Transactional outbox: events written in the same transaction as the state change, and the relay
that delivers them afterwards, at least once, with retries and exponential backoff.

Each service that emits events has a concrete subclass of `OutboxEvent` in its own app (so in its
own database), and that subclass says where its events go (`deliver()`, usually `event_post()` to
the consumer's URL): the kernel knows no consumer. `outbox_event_add()` writes a row inside the
caller's transaction, with the trace it was written in (its delivery continues that trace), and
`manage.py outbox_relay` runs `relay_batch()` in a loop for every concrete outbox model installed.

The relay is a worker of `apps.core.work_queue`: it claims a batch under a lease, renews an
event's lease just before delivering it once what is left of the claim's lease could run out during
the delivery (so the lease covers one delivery, whatever the batch size: `delivery_lease_seconds()`;
the events of a batch worked within its first seconds need no renewal), delivers outside any
transaction and records the attempt only while it still holds the event. It looks at its stop
signal before each event, and stops the batch at the first delivery that got no answer at all (the
consumer is down or hanging: the rest of the batch would only wait out the same timeouts);
unreached events are released. A relay that dies mid-batch delays its rows only until their lease
ends. Should a delivery outlive its lease anyway, the event can be delivered twice: consumers
deduplicate by `event_id`, as at-least-once requires.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.db import connection, models
from django.db.models import F, Q
from django.db.models.functions import Now

from apps.core import metrics, service_calls, tracing, work_queue
from apps.core.constraints import OneQueryCheckConstraints

logger = logging.getLogger(__name__)

# HTTP answers after which a retry cannot succeed: the event itself is refused. Anything else
# (no answer, 5xx, 401/403 while credentials are being fixed, 408, 409, 429) is retried.
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 413, 415, 422})
# Room above one delivery's worst case for the database writes around it.
LEASE_MARGIN_SECONDS = 10.0

DELIVERY_OUTCOMES = ("delivered", "retry", "failed", "lost")
# Started at 0 for every outcome only in a process with an outbox (outbox_state_register).
DELIVERIES = metrics.counter(
    "outbox_deliveries",
    "Outbox delivery attempts by outcome: delivered; retry (not delivered, tried again later); failed "
    "(refused for good, an operator decides); lost (the lease had passed to another relay).",
    {"outcome": ()},
)


class OutboxEvent(OneQueryCheckConstraints, models.Model):
    """One event to deliver. `id` is the event id consumers deduplicate on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=64)  # order.paid, payment.refunded, ...
    user_id = models.UUIDField(db_index=True)  # whose inbox the event is for
    aggregate_id = models.UUIDField(db_index=True)  # the order or payment it is about
    data = models.JSONField(default=dict)
    # The W3C `traceparent` of the span that wrote the event: its delivery continues that trace.
    # A database default, so that rows written by code that predates the column are valid too.
    traceparent = models.CharField(max_length=55, blank=True, db_default="")
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

    def envelope(self) -> dict:
        """The event as consumers receive it."""
        return {"event_id": str(self.id), "type": self.type, "user_id": str(self.user_id), "data": self.data}

    def deliver(self) -> DeliveryResult:
        """Send this event to its consumer; each concrete outbox says where (see `event_post`)."""
        raise NotImplementedError(f"{type(self).__name__} does not say where its events go")


def outbox_event_add(
    model: type[OutboxEvent], *, event_type: str, user_id: uuid.UUID | str, aggregate_id: uuid.UUID | str, data: dict
) -> OutboxEvent:
    """Write an event; call it inside the transaction that makes the change the event reports."""
    if not connection.in_atomic_block:
        raise RuntimeError("outbox events are written inside the transaction of the state change")
    event = model(
        type=event_type, user_id=user_id, aggregate_id=aggregate_id, data=data, traceparent=tracing.traceparent()
    )
    event.full_clean(validate_unique=False)  # a fresh UUID: its uniqueness is the database's
    event.save(force_insert=True)
    return event


def outbox_models() -> list[type[OutboxEvent]]:
    """Every concrete outbox model this process has installed (one per service that emits events)."""
    return [model for model in apps.get_models() if issubclass(model, OutboxEvent)]


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status: int | None = None  # the consumer's HTTP status; None when it gave no answer
    error: str = ""
    permanent: bool = False

    @property
    def answered(self) -> bool:
        return self.status is not None


def event_post(event: OutboxEvent, *, base_url: str, path: str) -> DeliveryResult:
    """POST the event's envelope to another service with this service's client-credentials token."""
    try:
        response = service_calls.call(
            "POST",
            base_url,
            path,
            auth="service",
            json=event.envelope(),
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


def delivery_lease_seconds() -> float:
    """How long a relay holds one event: longer than the slowest delivery (a token fetch and a
    retried POST, `service_calls.service_call_budget_seconds()`), so a live delivery keeps its lease."""
    return service_calls.service_call_budget_seconds() + LEASE_MARGIN_SECONDS


def _due(model: type[OutboxEvent]) -> models.QuerySet:
    return model.objects.filter(delivered_at__isnull=True, failed_at__isnull=True)


def _record(
    model: type[OutboxEvent], event: OutboxEvent, result: DeliveryResult, *, relay: str, base: float, maximum: float
) -> str:
    attempts = event.attempts + 1
    changes = {"attempts": F("attempts") + 1, "last_attempt_at": Now(), "last_status": result.status}
    if result.delivered:
        changes.update(delivered_at=Now(), last_error="")
        outcome = "delivered"
    elif result.permanent:
        changes.update(failed_at=Now(), last_error=result.error)
        outcome = "failed"
    else:
        delay = work_queue.backoff_seconds(attempts, base=base, maximum=maximum)
        changes.update(last_error=result.error, available_at=work_queue.in_seconds(delay))
        outcome = "retry"
    if not work_queue.record(model, event.pk, worker=relay, **changes):
        outcome = "lost"  # the lease ran out and another relay took the event: its record stands
    DELIVERIES.labels(outcome=outcome).inc()
    log = logger.info if outcome == "delivered" else logger.warning
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
    released: int = 0  # claimed but not attempted: stopping, or the consumer gave no answer
    lost: int = 0  # the lease had passed to another relay
    interrupted: bool = False  # the batch ended early (stop signal or no answer from the consumer)


def relay_batch(
    model: type[OutboxEvent],
    *,
    relay: str,
    should_stop: Callable[[], bool] = lambda: False,
    deliver: Callable[[OutboxEvent], DeliveryResult] | None = None,
    batch_size: int = 50,
    lease_seconds: float | None = None,
    backoff_base: float = 1.0,
    backoff_max: float = 300.0,
) -> BatchReport:
    """Claim one batch and deliver it event by event (see the module docstring)."""
    lease = work_queue.BatchLease(lease_seconds if lease_seconds is not None else delivery_lease_seconds())
    budget = service_calls.service_call_budget_seconds()  # the slowest delivery
    report = BatchReport()
    ids = work_queue.claim(_due(model), worker=relay, batch_size=batch_size, lease_seconds=lease.seconds)
    report.claimed = len(ids)
    events = {event.pk: event for event in model.objects.filter(pk__in=ids)}
    for position, pk in enumerate(ids):
        if should_stop():
            report.interrupted = True
            report.released += work_queue.release(model, ids[position:], worker=relay)
            break
        if not work_queue.lease_hold(model, pk, worker=relay, lease=lease, work_seconds=budget):
            report.lost += 1
            continue
        event = events[pk]
        with tracing.delivery_span(
            parent_traceparent=event.traceparent,
            event_type=event.type,
            event_id=str(event.id),
            attempt=event.attempts + 1,
        ) as span:
            try:
                result = (deliver or type(event).deliver)(event)
            except Exception as error:  # a bug in delivery must not stop the relay or lose the event
                logger.exception("outbox delivery raised", extra={"event_id": str(event.id)})
                result = DeliveryResult(delivered=False, error=f"{error.__class__.__name__}: {error}")
            outcome = _record(model, event, result, relay=relay, base=backoff_base, maximum=backoff_max)
            tracing.delivery_span_finish(span, outcome=outcome)
        report.delivered += outcome == "delivered"
        report.retried += outcome == "retry"
        report.failed += outcome == "failed"
        report.lost += outcome == "lost"
        if not result.answered:
            report.interrupted = True
            report.released += work_queue.release(model, ids[position + 1 :], worker=relay)
            break
    return report


def outbox_event_retry(model: type[OutboxEvent], *, event_ids: list) -> int:
    """Make events due again now (an operator's decision after fixing the cause of a failure).
    An event a relay is working on right now keeps its lease."""
    return (
        model.objects.filter(pk__in=event_ids, delivered_at__isnull=True)
        .filter(Q(claimed_by="") | Q(available_at__lte=Now()))
        .update(failed_at=None, available_at=Now(), claimed_by="")
    )


def outbox_delivered_prune(model: type[OutboxEvent], *, older_than: timedelta, chunk_size: int = 1000) -> int:
    """Delete events delivered more than `older_than` ago, in chunks that keep each lock short.
    Events that failed for good stay: an operator decides about them."""
    deleted = 0
    while True:
        chunk = list(
            model.objects.filter(delivered_at__lt=Now() - older_than).values_list("pk", flat=True)[:chunk_size]
        )
        if not chunk:
            return deleted
        deleted += model.objects.filter(pk__in=chunk).delete()[0]


def _backlog_gauges() -> list:
    """Per outbox model: events neither delivered nor failed, and the age of the oldest of them."""
    pending, oldest = [], []
    for model in outbox_models():
        events, age = metrics.backlog(_due(model))
        labels = {"outbox": model._meta.label_lower}
        pending.append((labels, events))
        oldest.append((labels, age))
    return [
        metrics.gauge(
            "outbox_pending_events",
            "Outbox events neither delivered nor failed for good (due now or waiting for a retry).",
            pending,
        ),
        metrics.gauge(
            "outbox_oldest_pending_event_age_seconds",
            "Age of the oldest outbox event neither delivered nor failed for good; 0 when there is none.",
            oldest,
        ),
    ]


def outbox_state_register() -> None:
    """The outbox backlog in every scrape of a web process that has an outbox, and its delivery
    counts from 0."""
    if outbox_models():
        metrics.state_reader_register("outbox", _backlog_gauges)
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(outcome=outcome)
