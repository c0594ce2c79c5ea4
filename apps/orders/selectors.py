"""Reads of the orders service: a customer's orders, never anyone else's."""

import uuid

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from apps.orders.models import Order, OrderLine, OrderStatusChange


def _lines_and_history() -> tuple[Prefetch, Prefetch]:
    """Lines and history, each ordered on its own table. Their models' default ordering starts with
    `order`, which means the order's own ordering and joins orders_order into both queries; the
    prefetch groups rows by order anyway, so the order within one order is all that is needed."""
    return (
        Prefetch("lines", queryset=OrderLine.objects.order_by("position")),
        Prefetch("status_changes", queryset=OrderStatusChange.objects.order_by("created_at", "id")),
    )


def order_list(*, customer_id: str) -> QuerySet[Order]:
    """The customer's orders, newest first, with lines and history fetched in two more queries."""
    return (
        Order.objects.filter(customer_id=customer_id)
        .prefetch_related(*_lines_and_history())
        .order_by("-created_at", "-id")
    )


def order_get(*, customer_id: str, order_id: uuid.UUID) -> Order:
    """One of the customer's orders; another customer's order is a 404, as if it did not exist."""
    try:
        return Order.objects.prefetch_related(*_lines_and_history()).get(customer_id=customer_id, pk=order_id)
    except Order.DoesNotExist:
        raise Http404("No such order.") from None
