"""Orders as the tests need them, stored as they would be after placement: the order, its lines and its
status history, without going through payments."""

import uuid

from apps.orders.models import Order, OrderLine, OrderStatusChange

PAID_HISTORY = (("", "pending"), ("pending", "paid"))


def order_make(
    customer_id,
    *,
    lines: tuple[tuple[str, int, int], ...] = (("BOOK-42", 2, 250),),
    history: tuple[tuple[str, str], ...] = PAID_HISTORY,
    **fields,
) -> Order:
    """An order of `customer_id` with `lines` (sku, quantity, unit price) and `history` (from, to);
    a paid EUR card order unless `fields` say otherwise. The total is the lines' unless given."""
    order = Order.objects.create(
        **{
            "customer_id": customer_id,
            "idempotency_key": f"k-{uuid.uuid4().hex}",
            "request_fingerprint": "f",
            "currency": "EUR",
            "total": sum(quantity * unit_price for _sku, quantity, unit_price in lines),
            "payment_method": "pm_card_visa",
            "status": history[-1][1] if history else "pending",
            "payment_id": uuid.uuid4(),
            **fields,
        }
    )
    for position, (sku, quantity, unit_price) in enumerate(lines, 1):
        OrderLine.objects.create(order=order, position=position, sku=sku, quantity=quantity, unit_price=unit_price)
    for before, after in history:
        OrderStatusChange.objects.create(order=order, from_status=before, to_status=after, reason="test")
    return order
