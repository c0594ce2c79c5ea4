"""The outbox relay against a real database, with the orders service's outbox as the concrete model."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core import outbox, work_queue
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


def test_the_envelope_is_the_event_as_consumers_receive_it():
    (event,) = add()
    assert event.envelope() == {"event_id": str(event.id), "type": "order.paid", "user_id": str(USER), "data": {"n": 0}}


def test_the_kernel_outbox_knows_no_consumer_the_concrete_one_does():
    with pytest.raises(NotImplementedError):
        outbox.OutboxEvent.deliver(OrderEvent(type="x", user_id=USER, aggregate_id=USER))


def test_a_delivered_event_is_recorded_and_not_delivered_again():
    (event,) = add()
    deliver = Recorder()
    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver)
    again = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver)
    event.refresh_from_db()
    assert (report.claimed, report.delivered, again.claimed) == (1, 1, 0)
    assert deliver.seen == [event.id]
    assert (event.state, event.attempts, event.last_status, event.claimed_by) == ("delivered", 1, 202, "")


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
    assert before + timedelta(seconds=4) <= event.available_at <= timezone.now() + timedelta(seconds=11)
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


def test_a_relay_whose_lease_passed_to_another_cannot_record():
    (event,) = add()
    work_queue.claim(OrderEvent.objects.all(), worker="r1", batch_size=1, lease_seconds=60)
    OrderEvent.objects.filter(pk=event.pk).update(claimed_by="r2")  # r1's lease ran out; r2 took it
    outcome = outbox._record(
        OrderEvent, event, DeliveryResult(delivered=False, status=503, error="late"), relay="r1", base=1, maximum=1
    )
    event.refresh_from_db()
    assert (outcome, event.claimed_by, event.attempts, event.last_error) == ("lost", "r2", 0, "")


def test_the_batch_stops_at_the_first_delivery_without_an_answer_and_releases_the_rest():
    events = add(3)
    deliver = Recorder(DeliveryResult(delivered=False, error="ConnectTimeout"))
    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver)
    assert (report.claimed, report.retried, report.released, report.interrupted) == (3, 1, 2, True)
    assert len(deliver.seen) == 1
    untried = OrderEvent.objects.exclude(pk=deliver.seen[0])
    assert sorted(untried.values_list("attempts", "claimed_by")) == [(0, ""), (0, "")]
    assert {event.id for event in events} == {*deliver.seen, *untried.values_list("pk", flat=True)}


def test_an_answered_failure_does_not_stop_the_batch():
    add(3)
    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder(DeliveryResult(delivered=False, status=503)))
    assert (report.retried, report.released, report.interrupted) == (3, 0, False)


def test_the_stop_signal_is_looked_at_before_each_event():
    add(3)
    deliver = Recorder()
    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver, should_stop=lambda: len(deliver.seen) >= 1)
    assert (report.delivered, report.released, report.interrupted) == (1, 2, True)
    assert OrderEvent.objects.filter(delivered_at__isnull=True, claimed_by="").count() == 2


def test_an_event_whose_lease_another_relay_took_mid_batch_is_skipped(monkeypatch):
    add(2)
    delivered = []
    clock = [1000.0]
    monkeypatch.setattr(work_queue.time, "monotonic", lambda: clock[0])

    def deliver(event):
        # A delivery that took most of the lease: what is left of the claim's could not cover another,
        # and r2 took the other event meanwhile.
        clock[0] += outbox.delivery_lease_seconds() - 1
        OrderEvent.objects.exclude(pk=event.pk).update(claimed_by="r2")
        delivered.append(event.pk)
        return DeliveryResult(delivered=True, status=202)

    report = outbox.relay_batch(OrderEvent, relay="r1", deliver=deliver, batch_size=2)
    assert (report.delivered, report.lost, len(delivered)) == (1, 1, 1)
    assert OrderEvent.objects.exclude(pk=delivered[0]).get().claimed_by == "r2"


def test_a_batch_delivered_while_the_claims_lease_covers_a_delivery_renews_no_event():
    add(3)
    with CaptureQueriesContext(connection) as captured:
        report = outbox.relay_batch(OrderEvent, relay="r1", deliver=Recorder())
    assert report.delivered == 3
    updates = [query["sql"] for query in captured.captured_queries if query["sql"].startswith("UPDATE")]
    # The claim's lease of the three, then each one's record: no lease renewed one by one.
    assert len(updates) == 4, updates
    assert OrderEvent.objects.filter(delivered_at__isnull=False, claimed_by="").count() == 3


def test_the_lease_on_one_event_covers_its_slowest_delivery(settings):
    from apps.core import service_calls

    assert outbox.delivery_lease_seconds() == service_calls.service_call_budget_seconds() + 10
    assert outbox.delivery_lease_seconds() == pytest.approx(37.0)


def test_an_operator_retry_leaves_a_leased_event_alone():
    (event,) = add()
    work_queue.claim(OrderEvent.objects.all(), worker="r1", batch_size=1, lease_seconds=60)
    assert outbox.outbox_event_retry(OrderEvent, event_ids=[event.id]) == 0
    assert OrderEvent.objects.get().claimed_by == "r1"


def test_prune_deletes_only_events_delivered_before_the_retention():
    old, recent, pending = add(3)
    now = timezone.now()
    OrderEvent.objects.filter(pk=old.pk).update(delivered_at=now - timedelta(days=8))
    OrderEvent.objects.filter(pk=recent.pk).update(delivered_at=now - timedelta(days=6))
    assert outbox.outbox_delivered_prune(OrderEvent, older_than=timedelta(days=7)) == 1
    assert sorted(OrderEvent.objects.values_list("pk", flat=True)) == sorted([recent.id, pending.id])


def test_the_installed_outboxes_are_found():
    from apps.payments.models import PaymentEvent

    assert outbox.outbox_models() == [OrderEvent, PaymentEvent]
