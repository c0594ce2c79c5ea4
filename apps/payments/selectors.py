"""Reads of the payments service."""

import uuid

from django.http import Http404

from apps.core.prepared import PreparedQuery
from apps.payments.models import IdempotencyRecord, Payment


def payment_get(*, payment_id: uuid.UUID, user_id: str | None) -> Payment:
    """A payment by id; for a user (`user_id` given) only their own, anyone else's is a 404."""
    payments = Payment.objects.all()  # the answer renders no refunds: fetching them would be a wasted query
    if user_id is not None:
        payments = payments.filter(user_id=user_id)
    payment = payments.filter(pk=payment_id).first()
    if payment is None:
        raise Http404("No such payment.")
    return payment


# Asked on every charge, before the processor is: prepared (apps.core.prepared), the SQL below
# compiled once per thread and database instead of built, compiled and walked by the ORM each time.
_CHARGES_OF_ORDER = PreparedQuery(
    Payment, lambda order_id: Payment.objects.filter(order_id=order_id), order_id="order_id"
)


def order_charges(*, order_id: uuid.UUID) -> list[Payment]:
    """Every charge of an order, newest first: a few at most, one per declined attempt and the capture."""
    return _CHARGES_OF_ORDER.run(order_id=order_id)


_RECORD_LOCKED = PreparedQuery(
    IdempotencyRecord,
    lambda record_id: IdempotencyRecord.objects.select_for_update().filter(pk=record_id).order_by(),
    record_id="id",
)


def idempotency_record_locked(*, record_id: int) -> IdempotencyRecord:
    """The record a request is completing, locked until the transaction ends, as
    `select_for_update().get()` reads it (prepared: once per charge and refund);
    IdempotencyRecord.DoesNotExist when it is gone. Inside a transaction only."""
    return _RECORD_LOCKED.get(record_id=record_id)
