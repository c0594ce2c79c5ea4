"""Reads of the payments service (apps/payments/selectors.py)."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.payments import selectors
from apps.payments.models import IdempotencyRecord, Payment

pytestmark = pytest.mark.django_db


def _payment(user_id: uuid.UUID) -> Payment:
    return Payment.objects.create(
        order_id=uuid.uuid4(), user_id=user_id, amount=100, currency="EUR", status="declined", created_by="orders"
    )


def test_a_payment_is_read_in_one_query(django_assert_num_queries):
    payment = _payment(uuid.uuid4())
    with django_assert_num_queries(1):
        assert selectors.payment_get(payment_id=payment.id, user_id=None) == payment


def test_a_user_reads_only_their_own_payment():
    payment = _payment(uuid.uuid4())
    with pytest.raises(Http404):
        selectors.payment_get(payment_id=payment.id, user_id=str(uuid.uuid4()))


def test_an_orders_charges_are_read_newest_first_in_one_query_and_no_other_orders(django_assert_num_queries):
    order_id, user_id = uuid.uuid4(), uuid.uuid4()
    first = timezone.now() - timedelta(minutes=10)
    made = [
        Payment.objects.create(
            order_id=order_id,
            user_id=user_id,
            amount=100,
            currency="EUR",
            status=status,
            created_by="orders",
            created_at=first + timedelta(minutes=minutes),
        )
        for minutes, status in ((0, "declined"), (1, "declined"), (2, "succeeded"))
    ]
    _payment(user_id)  # another order's

    with django_assert_num_queries(1):
        found = selectors.order_charges(order_id=order_id)

    assert found == made[::-1]
    assert [payment.status for payment in found] == ["succeeded", "declined", "declined"]
    assert [payment.created_at for payment in found] == [payment.created_at for payment in made[::-1]]
    assert found[0].amount == 100 and found[0].currency == "EUR" and found[0].user_id == user_id
    assert selectors.order_charges(order_id=uuid.uuid4()) == []


def test_a_locked_idempotency_record_is_what_the_orms_select_for_update_reads_in_one_statement():
    record = IdempotencyRecord.objects.create(
        client_id="orders",
        key="k",
        request_fingerprint="f",
        request_body={"amount": 100},
        locked_until=timezone.now(),
    )

    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        locked = selectors.idempotency_record_locked(record_id=record.pk)
    expected = IdempotencyRecord.objects.get(pk=record.pk)

    assert model_to_dict(locked) == model_to_dict(expected)
    assert locked.request_body == {"amount": 100} and locked.created_at == expected.created_at
    assert len(captured.captured_queries) == 1
    assert ("FOR UPDATE" in captured.captured_queries[0]["sql"]) == connection.features.has_select_for_update
    with transaction.atomic(), pytest.raises(IdempotencyRecord.DoesNotExist):
        selectors.idempotency_record_locked(record_id=record.pk + 1)
