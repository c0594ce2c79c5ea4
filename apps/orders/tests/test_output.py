"""An order's representation (apps.core.serializers.output_of) is the one DRF's serializer, made
afresh, gives for the same order, however the order was read."""

import uuid

import pytest
from django.utils import timezone
from rest_framework import serializers

from apps.core import serializers as core_serializers
from apps.core.serializers import output_of
from apps.orders import selectors
from apps.orders.apis import OrderLineOutputSerializer, OrderOutputSerializer
from apps.orders.models import Order, OrderLine, OrderStatusChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders():
    customer_id = uuid.uuid4()
    paid = Order.objects.create(
        customer_id=customer_id,
        idempotency_key="paid",
        request_fingerprint="f",
        currency="EUR",
        total=2 * 250 + 1999,
        payment_method="pm_card_visa",
        status="cancelled",
        payment_id=uuid.uuid4(),
        refund_id=uuid.uuid4(),
        refunded_amount=2 * 250 + 1999,
    )
    OrderLine.objects.create(order=paid, position=1, sku="BOOK-42", quantity=2, unit_price=250)
    OrderLine.objects.create(order=paid, position=2, sku="PEN.1", quantity=1, unit_price=1999)
    for before, after in (("", "pending"), ("pending", "paid"), ("paid", "cancelling"), ("cancelling", "cancelled")):
        OrderStatusChange.objects.create(order=paid, from_status=before, to_status=after, reason="test")
    refused = Order.objects.create(
        customer_id=customer_id,
        idempotency_key="refused",
        request_fingerprint="f",
        currency="JPY",
        total=7,
        payment_method="pm_card_declined",
        status="payment_refused",
        payment_error="card declined",
    )
    OrderLine.objects.create(order=refused, position=1, sku="X", quantity=7, unit_price=1)
    return customer_id, [paid, refused]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_an_order_read_one_at_a_time_or_listed_is_represented_as_drf_represents_it(orders, zone):
    customer_id, placed = orders
    with timezone.override(zone):
        for order in placed:
            read = selectors.order_get(customer_id=str(customer_id), order_id=order.id)
            assert output_of(OrderOutputSerializer, read) == OrderOutputSerializer(read).data
        listed = list(selectors.order_list(customer_id=str(customer_id)))
        assert [output_of(OrderOutputSerializer, order) for order in listed] == OrderOutputSerializer(
            listed, many=True
        ).data
    assert core_serializers._outputs[OrderOutputSerializer][1] is not None  # decided once, not DRF's walk


def test_lines_through_the_related_manager_are_represented_as_drf_represents_them(orders):
    class LinesSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        lines = OrderLineOutputSerializer(many=True)  # the related manager: DRF takes .all()

    _customer_id, placed = orders
    order = Order.objects.get(pk=placed[0].pk)
    represented = output_of(LinesSerializer, order)
    assert represented == LinesSerializer(order).data
    assert sorted(line["sku"] for line in represented["lines"]) == ["BOOK-42", "PEN.1"]
