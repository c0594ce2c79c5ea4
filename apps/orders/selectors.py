"""Reads of the orders service: a customer's orders, never anyone else's."""

import uuid

from django.db.models import QuerySet
from django.http import Http404

from apps.orders.models import Order


def order_list(*, customer_id: str) -> QuerySet[Order]:
    """The customer's orders, newest first, with lines and history fetched in two more queries."""
    return (
        Order.objects.filter(customer_id=customer_id)
        .prefetch_related("lines", "status_changes")
        .order_by("-created_at", "-id")
    )


def order_get(*, customer_id: str, order_id: uuid.UUID) -> Order:
    """One of the customer's orders; another customer's order is a 404, as if it did not exist."""
    order = order_list(customer_id=customer_id).filter(pk=order_id).first()
    if order is None:
        raise Http404("No such order.")
    return order
