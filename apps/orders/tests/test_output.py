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
from apps.orders.models import Order
from apps.orders.tests.factories import order_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders():
    customer_id = uuid.uuid4()
    cancelled = order_make(
        customer_id,
        lines=(("BOOK-42", 2, 250), ("PEN.1", 1, 1999)),
        history=(("", "pending"), ("pending", "paid"), ("paid", "cancelling"), ("cancelling", "cancelled")),
        refund_id=uuid.uuid4(),
        refunded_amount=2 * 250 + 1999,
    )
    refused = order_make(
        customer_id,
        lines=(("X", 7, 1),),
        history=(),
        currency="JPY",
        payment_method="pm_card_declined",
        status="payment_refused",
        payment_id=None,
        payment_error="card declined",
    )
    return customer_id, [cancelled, refused]


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
