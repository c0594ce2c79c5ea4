"""Reads of the orders service: a customer's orders, never anyone else's."""

import uuid

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from apps.core.prepared import PreparedQuery, run_together
from apps.orders.models import Order, OrderLine, OrderStatusChange

# Where an order's lines and history are kept on it for OrderOutputSerializer, in their order.
LINES = "lines_by_position"
HISTORY = "status_changes_by_time"


def _lines_and_history() -> tuple[Prefetch, Prefetch]:
    """Lines and history, each ordered on its own table. Their models' default ordering starts with
    `order`, which means the order's own ordering and joins orders_order into both queries; the
    prefetch groups rows by order anyway, so the order within one order is all that is needed."""
    return (
        Prefetch("lines", queryset=OrderLine.objects.order_by("position"), to_attr=LINES),
        Prefetch("status_changes", queryset=OrderStatusChange.objects.order_by("created_at", "id"), to_attr=HISTORY),
    )


def order_list(*, customer_id: str) -> QuerySet[Order]:
    """The customer's orders, newest first, with lines and history fetched in two more queries."""
    return (
        Order.objects.filter(customer_id=customer_id)
        .prefetch_related(*_lines_and_history())
        .order_by("-created_at", "-id")
    )


# One order is what every read, placement and cancellation answers with: its three queries are
# prepared (apps.core.prepared), the same SQL the querysets below compile to, compiled once, and sent
# together (one round trip on PostgreSQL).
_ORDER = PreparedQuery(
    Order,
    lambda customer_id, order_id: Order.objects.filter(customer_id=customer_id, pk=order_id).order_by(),
    customer_id="customer_id",
    order_id="id",
)
_LINES = PreparedQuery(
    OrderLine, lambda order_id: OrderLine.objects.filter(order_id=order_id).order_by("position"), order_id="order"
)
_HISTORY = PreparedQuery(
    OrderStatusChange,
    lambda order_id: OrderStatusChange.objects.filter(order_id=order_id).order_by("created_at", "id"),
    order_id="order",
)


_ORDER_BY_KEY = PreparedQuery(
    Order,
    lambda customer_id, idempotency_key: Order.objects.filter(
        customer_id=customer_id, idempotency_key=idempotency_key
    ).order_by(),
    customer_id="customer_id",
    idempotency_key="idempotency_key",
)


# The order a service function is about to change, its row locked until the transaction ends: asked
# once or more per placement, cancellation and settlement, so prepared too.
_ORDER_LOCKED = PreparedQuery(
    Order, lambda order_id: Order.objects.select_for_update().filter(pk=order_id).order_by(), order_id="id"
)


def order_locked(*, order_id: uuid.UUID) -> Order:
    """The order, locked until the transaction ends (PostgreSQL: `FOR UPDATE`; SQLite locks the
    whole database for a writing transaction anyway), as `select_for_update().get()` reads it;
    Order.DoesNotExist when it is gone. Inside a transaction only."""
    return _ORDER_LOCKED.get(order_id=order_id)


def order_by_idempotency_key(*, customer_id: str, idempotency_key: str) -> Order | None:
    """The customer's order placed with this Idempotency-Key (at most one: a unique constraint), or None."""
    found = _ORDER_BY_KEY.run(customer_id=customer_id, idempotency_key=idempotency_key)
    return found[0] if found else None


def order_get(*, customer_id: str, order_id: uuid.UUID) -> Order:
    """One of the customer's orders, with its lines and history; another customer's order is a 404,
    as if it did not exist."""
    # The lines and history are asked for by the order's id alone, in the same trip as the order,
    # and dropped unseen when the order is not this customer's.
    found, lines, history = run_together(
        (_ORDER, {"customer_id": customer_id, "order_id": order_id}),
        (_LINES, {"order_id": order_id}),
        (_HISTORY, {"order_id": order_id}),
    )
    if not found:
        raise Http404("No such order.")
    order = found[0]
    setattr(order, LINES, lines)
    setattr(order, HISTORY, history)
    return order
