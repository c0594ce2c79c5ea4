"""The orders service's scheduled commands: order_payments_settle is covered in test_services.py with
payments live; orders_prune here."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from apps.core.outbox import outbox_event_add
from apps.orders.models import OrderEvent

pytestmark = pytest.mark.django_db


def test_orders_prune_deletes_events_delivered_more_than_a_week_ago(capsys):
    with transaction.atomic():
        old, recent, undelivered = (
            outbox_event_add(
                OrderEvent, event_type="order.paid", user_id=uuid.uuid4(), aggregate_id=uuid.uuid4(), data={"n": n}
            )
            for n in range(3)
        )
    OrderEvent.objects.filter(pk=old.pk).update(delivered_at=timezone.now() - timedelta(days=8))
    OrderEvent.objects.filter(pk=recent.pk).update(delivered_at=timezone.now() - timedelta(days=1))
    call_command("orders_prune")
    assert capsys.readouterr().out.strip() == "pruned 1 delivered outbox events"
    assert sorted(OrderEvent.objects.values_list("pk", flat=True)) == sorted([recent.pk, undelivered.pk])


def test_orders_prune_refuses_a_negative_retention():
    with pytest.raises(CommandError):
        call_command("orders_prune", "--delivered-older-than", "-1")
