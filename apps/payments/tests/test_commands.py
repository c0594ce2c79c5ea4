"""The payments service's scheduled commands: payments_prune and payments_requests_finish."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.payments import services
from apps.payments.models import IdempotencyRecord, Payment

pytestmark = pytest.mark.django_db


def charge(key: str) -> services.Answer:
    return services.payment_charge(
        client_id="orders",
        idempotency_key=key,
        path="/api/payments/",
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        amount=100,
        currency="EUR",
        payment_method="pm_card_visa",
    )


def test_payments_prune_forgets_keys_completed_over_a_day_ago(capsys):
    charge("old")
    charge("new")
    IdempotencyRecord.objects.filter(key="old").update(completed_at=timezone.now() - timedelta(hours=25))
    call_command("payments_prune")
    assert capsys.readouterr().out.strip() == "pruned 1 idempotency records, 0 delivered outbox events"
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert Payment.objects.count() == 2


def test_payments_requests_finish_reports_what_it_did(capsys):
    body = {
        "order_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "amount": 100,
        "currency": "EUR",
        "payment_method": "pm_card_declined",
        "receipt_email": "",
    }
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="died",
        request_fingerprint=services.request_fingerprint(method="POST", path="/api/payments/", body=body),
        operation="charge",
        request_body=body,
        locked_until=timezone.now() - timedelta(seconds=1),
    )
    call_command("payments_requests_finish")
    assert capsys.readouterr().out.strip() == "finished 1, refused 0, failed 0"
    assert Payment.objects.get().decline_code == "card_declined"
