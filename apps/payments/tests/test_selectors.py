"""Reads of the payments service (apps/payments/selectors.py)."""

import uuid

import pytest
from django.http import Http404

from apps.payments import selectors
from apps.payments.models import Payment

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
