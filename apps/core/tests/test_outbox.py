"""The outbox relay against a real database, with the orders service's outbox as the concrete model."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core import outbox
from apps.core.outbox import DeliveryResult
from apps.orders.models import OrderEvent

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


def add(count=1) -> list[OrderEvent]:
    with transaction.atomic():
        return [
            outbox.outbox_event_add(
                OrderEvent, event_type="order.paid", user_id=USER, aggregate_id=uuid.uuid4(), data={"n": n}
            )
            for n in range(count)
        ]


class Recorder:
    """A delivery function that records what it was given and answers as told."""

    def __init__(self, result=None):
        self.result = result or DeliveryResult(delivered=True, status=202)
        self.seen: list[uuid.UUID] = []

    def __call__(self, event):
        self.seen.append(event.id)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_the_message_is_what_notifications_accepts():
    (event,) = add()
    assert event.message() == {"event_id": str(event.id), "type": "order.paid", "user_id": str(USER), "data": {"n": 0}}


def test_a_delivered_event_is_recorded_and_not_delivered_again():
    (event,) = add()
    deliver = Recorder()
    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver)
    again = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver)
    event.refresh_from_db()
    assert (report.claimed, report.delivered, again.claimed) == (1, 1, 0)
    assert deliver.seen == [event.id]
    assert (event.state, event.attempts, event.last_status, event.claimed_by) == ("delivered", 1, 202, "")


def test_a_claimed_event_is_not_claimed_by_another_relay_until_its_lease_ends():
    (event,) = add()
    assert [claimed.id for claimed in outbox.claim(OrderEvent, relay="r1", batch_size=10, lease_seconds=60)] == [
        event.id
    ]
    assert outbox.claim(OrderEvent, relay="r2", batch_size=10, lease_seconds=60) == []
    OrderEvent.objects.filter(pk=event.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert [claimed.id for claimed in outbox.claim(OrderEvent, relay="r2", batch_size=10, lease_seconds=60)] == [
        event.id
    ]
    assert OrderEvent.objects.get().claimed_by == "r2"


def test_a_batch_takes_the_oldest_due_events_first():
    events = add(3)
    claimed = outbox.claim(OrderEvent, relay="r1", batch_size=2, lease_seconds=60)
    assert len(claimed) == 2
    assert {event.id for event in claimed} < {event.id for event in events}


def test_a_failed_delivery_is_retried_later_with_backoff_and_the_attempt_recorded():
    (event,) = add()
    before = timezone.now()
    report = outbox.relay_batch(
        OrderEvent,
        relay="r1",
        deliver=Recorder(DeliveryResult(delivered=False, status=503, error="down")),
        backoff_base=10,
        backoff_max=100,
    )
    event.refresh_from_db()
    assert (report.retried, event.state, event.attempts, event.last_status, event.last_error) == (
        1,
        "pending",
        1,
        503,
        "down",
    )
    assert before + timedelta(seconds=5) <= event.available_at <= timezone.now() + timedelta(seconds=10)
    assert outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder()).claimed == 0


def test_a_refused_event_is_marked_failed_and_not_retried():
    (event,) = add()
    outbox.relay_batch(
        OrderEvent, relay="r1", deliver=Recorder(DeliveryResult(delivered=False, status=400, permanent=True))
    )
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("failed", 1)
    OrderEvent.objects.filter(pk=event.pk).update(available_at=timezone.now() - timedelta(days=1))
    assert outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder()).claimed == 0
    assert outbox.outbox_event_retry(OrderEvent, event_ids=[event.id]) == 1
    assert outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder()).delivered == 1


def test_a_delivery_that_raises_counts_as_a_failed_attempt():
    (event,) = add()
    outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder(RuntimeError("bug")))
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_error) == ("pending", 1, "RuntimeError: bug")


def test_a_late_relay_does_not_undo_another_relays_delivery():
    (event,) = add()
    stale = outbox.claim(OrderEvent, relay="r1", batch_size=1, lease_seconds=60)[0]
    OrderEvent.objects.filter(pk=event.pk).update(delivered_at=timezone.now(), attempts=1)
    outbox._record(OrderEvent, stale, DeliveryResult(delivered=False, error="late"), base=1, maximum=1)
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_error) == ("delivered", 1, "")


@pytest.mark.parametrize(("attempts", "low", "high"), [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (10, 30, 60)])
def test_backoff_doubles_with_jitter_up_to_the_maximum(attempts, low, high):
    delays = [outbox.backoff_seconds(attempts, base=1, maximum=60) for _ in range(50)]
    assert all(low <= delay <= high for delay in delays)


def test_the_installed_outboxes_are_found():
    from apps.payments.models import PaymentEvent

    assert outbox.outbox_models() == [OrderEvent, PaymentEvent]
