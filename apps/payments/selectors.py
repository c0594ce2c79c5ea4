"""Reads of the payments service."""

import uuid

from django.http import Http404

from apps.payments.models import Payment


def payment_get(*, payment_id: uuid.UUID, user_id: str | None) -> Payment:
    """A payment by id; for a user (`user_id` given) only their own, anyone else's is a 404."""
    payments = Payment.objects.all()  # the answer renders no refunds: fetching them would be a wasted query
    if user_id is not None:
        payments = payments.filter(user_id=user_id)
    payment = payments.filter(pk=payment_id).first()
    if payment is None:
        raise Http404("No such payment.")
    return payment
