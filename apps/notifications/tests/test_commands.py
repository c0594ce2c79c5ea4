"""The notifications service's commands: the email worker and the dedup-window prune."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.notifications import services
from apps.notifications.models import EmailDelivery, ProcessedEvent

pytestmark = pytest.mark.django_db

DATA = {"order_id": "o-1", "total": 100, "currency": "EUR", "email": "ada@example.com"}


def accept(number: int) -> None:
    services.event_accept(
        event_id=uuid.UUID(int=number), event_type="order.paid", user_id=uuid.uuid4(), data=DATA, source="orders"
    )


def test_email_deliver_once_sends_what_is_due_and_exits(capsys):
    for number in range(1, 4):
        accept(number)
    call_command("email_deliver", "--once", "--batch-size", "2")
    output = capsys.readouterr().out
    assert "claimed 2, sent 2" in output
    assert "claimed 1, sent 1" in output
    assert len(mail.outbox) == 3
    assert set(EmailDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_email_deliver_refuses_nonsense_options():
    with pytest.raises(CommandError, match="must be positive"):
        call_command("email_deliver", "--once", "--max-attempts", "0")


def test_notifications_prune_keeps_event_ids_inside_the_dedup_window(capsys):
    accept(1)
    accept(2)
    ProcessedEvent.objects.filter(pk=uuid.UUID(int=1)).update(last_received_at=timezone.now() - timedelta(days=31))
    call_command("notifications_prune")
    assert capsys.readouterr().out.strip() == "pruned 1 processed event ids"
    assert list(ProcessedEvent.objects.values_list("pk", flat=True)) == [uuid.UUID(int=2)]


def test_notifications_prune_refuses_a_window_shorter_than_a_day():
    with pytest.raises(CommandError, match="dedup window"):
        call_command("notifications_prune", "--older-than", "0.5")
