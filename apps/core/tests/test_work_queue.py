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


class Clock:
    """time.monotonic as work_queue reads it, moved by hand."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_batch_lease_covers_work_only_while_enough_of_it_is_left(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(work_queue.time, "monotonic", clock)
    lease = work_queue.BatchLease(37)
    # 27 s of work and the 5 s margin fit in the 37 s lease for the first 5 s after the claim.
    assert lease.covers(27)
    clock.now += 5.0
    assert lease.covers(27)
    clock.now += 0.01
    assert not lease.covers(27)
    assert lease.covers(20)


def test_a_row_is_held_without_a_statement_while_the_claim_covers_its_work_then_renewed(
    monkeypatch, django_assert_num_queries
):
    (event,) = add()
    clock = Clock()
    monkeypatch.setattr(work_queue.time, "monotonic", clock)
    lease = work_queue.BatchLease(60)
    work_queue.claim(due(), worker="w1", batch_size=1, lease_seconds=lease.seconds)
    event.refresh_from_db()
    claimed_until = event.available_at
    with django_assert_num_queries(0):
        assert work_queue.lease_hold(OrderEvent, event.pk, worker="w1", lease=lease, work_seconds=30)

    clock.now += 30  # 30 s of work no longer fits in what is left of the claim's 60 s
    with django_assert_num_queries(1):
        assert work_queue.lease_hold(OrderEvent, event.pk, worker="w1", lease=lease, work_seconds=30)
    event.refresh_from_db()
    assert event.available_at >= claimed_until  # renewed from the database's now

    OrderEvent.objects.filter(pk=event.pk).update(claimed_by="w2")  # the lease ran out and w2 took it
    assert not work_queue.lease_hold(OrderEvent, event.pk, worker="w1", lease=lease, work_seconds=30)


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
