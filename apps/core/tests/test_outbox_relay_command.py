"""`manage.py outbox_relay` delivering real events over real HTTP to the notifications service."""

import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from apps.core import outbox, service_calls, work_queue
from apps.notifications.models import Notification, ProcessedEvent
from apps.orders.models import OrderEvent
from apps.payments.models import PaymentEvent

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


@pytest.fixture
def notifications_live(live_server, settings):
    from apps.auth.services import service_client_ensure

    secret = "relay-test-secret-0123456789abcdef"
    service_client_ensure(client_id="orders", secret=secret, scopes=["notifications:publish"])
    settings.SERVICE_CLIENT_ID, settings.SERVICE_CLIENT_SECRET = "orders", secret
    settings.AUTH_URL = settings.NOTIFICATIONS_URL = live_server.url
    settings.SERVICE_CALL_RETRIES = 0
    service_calls.service_token.forget()
    yield live_server
    service_calls.service_token.forget()
    service_calls.sessions_close()


def add(model, event_type: str) -> outbox.OutboxEvent:
    with transaction.atomic():
        return outbox.outbox_event_add(
            model, event_type=event_type, user_id=USER, aggregate_id=uuid.uuid4(), data={"order_id": "o-1"}
        )


def test_once_delivers_both_outboxes_to_notifications_and_exits(notifications_live, capsys):
    paid, refunded = add(OrderEvent, "order.paid"), add(PaymentEvent, "payment.refunded")
    call_command("outbox_relay", "--once")
    assert OrderEvent.objects.get().state == PaymentEvent.objects.get().state == "delivered"
    assert sorted(Notification.objects.values_list("type", flat=True)) == ["order.paid", "payment.refunded"]
    assert set(ProcessedEvent.objects.values_list("event_id", "times_received")) == {(paid.id, 1), (refunded.id, 1)}
    assert "delivered 1" in capsys.readouterr().out


def test_once_with_notifications_unreachable_keeps_the_events_for_later(notifications_live, settings):
    add(OrderEvent, "order.paid")
    settings.NOTIFICATIONS_URL = "http://127.0.0.1:9"
    call_command("outbox_relay", "--once", "--backoff-base", "60")
    event = OrderEvent.objects.get()
    assert (event.state, event.attempts, event.last_status) == ("pending", 1, None)
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_nonsense_options_are_refused():
    with pytest.raises(CommandError, match="must be positive"):
        call_command("outbox_relay", "--once", "--batch-size", "0")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks to skip exist on PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_claim_skips_rows_another_transaction_holds_without_waiting():
    import threading

    held, free = add(OrderEvent, "order.paid"), add(OrderEvent, "order.paid")
    locked, release, claimed = threading.Event(), threading.Event(), []

    def other_relay():
        with transaction.atomic():
            list(OrderEvent.objects.select_for_update().filter(pk=held.pk))
            locked.set()
            release.wait(timeout=10)
        connection.close()

    thread = threading.Thread(target=other_relay)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        claimed = work_queue.claim(OrderEvent.objects.all(), worker="r2", batch_size=10, lease_seconds=60)
    finally:
        release.set()
        thread.join()
    assert claimed == [free.id]


@pytest.mark.django_db
def test_a_lease_shorter_than_one_delivery_is_refused():
    with pytest.raises(CommandError, match="--lease must cover one delivery"):
        call_command("outbox_relay", "--once", "--lease", "5")
