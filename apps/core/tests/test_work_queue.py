"""Claiming, leases and holder-only records of `apps.core.work_queue`, on a real database (the orders
outbox stands in as a queue: the kernel has no table of its own)."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core import outbox, work_queue
from apps.orders.models import OrderEvent

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


def add(count=1) -> list[OrderEvent]:
    with transaction.atomic():
        return [
            outbox.outbox_event_add(
                OrderEvent, event_type="order.paid", user_id=USER, aggregate_id=uuid.uuid4(), data={"n": 1}
            )
            for _ in range(count)
        ]


def due():
    return OrderEvent.objects.filter(delivered_at__isnull=True)


def test_a_claimed_row_is_not_claimed_by_another_worker_until_its_lease_ends():
    (event,) = add()
    assert work_queue.claim(due(), worker="w1", batch_size=10, lease_seconds=60) == [event.id]
    assert work_queue.claim(due(), worker="w2", batch_size=10, lease_seconds=60) == []
    OrderEvent.objects.filter(pk=event.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert work_queue.claim(due(), worker="w2", batch_size=10, lease_seconds=60) == [event.id]
    assert OrderEvent.objects.get().claimed_by == "w2"


def test_a_batch_takes_the_earliest_due_rows_first():
    events = add(3)
    now = timezone.now()
    for age, event in zip((1, 3, 2), events, strict=True):
        OrderEvent.objects.filter(pk=event.pk).update(available_at=now - timedelta(minutes=age))
    assert work_queue.claim(due(), worker="w1", batch_size=2, lease_seconds=60) == [events[1].id, events[2].id]


def test_the_lease_is_the_databases_clock_plus_the_lease():
    (event,) = add()
    work_queue.claim(due(), worker="w1", batch_size=1, lease_seconds=120)
    event.refresh_from_db()
    assert timedelta(seconds=110) < event.available_at - event.created_at < timedelta(seconds=130)


def test_only_the_holder_renews_and_records():
    (event,) = add()
    work_queue.claim(due(), worker="w1", batch_size=1, lease_seconds=60)
    assert work_queue.lease_renew(OrderEvent, event.pk, worker="w2", lease_seconds=60) is False
    assert work_queue.record(OrderEvent, event.pk, worker="w2", last_error="not mine") is False
    assert work_queue.lease_renew(OrderEvent, event.pk, worker="w1", lease_seconds=60) is True
    assert work_queue.record(OrderEvent, event.pk, worker="w1", last_error="mine") is True
    event.refresh_from_db()
    assert (event.claimed_by, event.last_error) == ("", "mine")
    assert work_queue.record(OrderEvent, event.pk, worker="w1", last_error="twice") is False


def test_released_rows_are_due_again_at_once():
    events = add(2)
    ids = work_queue.claim(due(), worker="w1", batch_size=2, lease_seconds=600)
    assert work_queue.release(OrderEvent, ids, worker="w2") == 0
    assert work_queue.release(OrderEvent, ids, worker="w1") == 2
    assert sorted(work_queue.claim(due(), worker="w2", batch_size=2, lease_seconds=60)) == sorted(e.id for e in events)


@pytest.mark.parametrize(("attempts", "low", "high"), [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (10, 30, 60)])
def test_backoff_doubles_with_jitter_up_to_the_maximum(attempts, low, high):
    delays = [work_queue.backoff_seconds(attempts, base=1, maximum=60) for _ in range(50)]
    assert all(low <= delay <= high for delay in delays)


def test_the_loop_stops_when_told_and_once_stops_when_idle():
    passes = []

    def work_pass():
        passes.append(1)
        return len(passes) < 3

    work_queue.worker_loop(work_pass, once=True, poll_interval=0.01, stop=lambda: False)
    assert len(passes) == 3
    work_queue.worker_loop(work_pass, once=False, poll_interval=0.01, stop=lambda: len(passes) >= 5)
    assert len(passes) == 5
