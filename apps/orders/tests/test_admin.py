"""The orders admin renders for a support engineer: an order's journey through orders' own tables."""

import uuid

import pytest
from django.contrib.auth.models import User as StaffUser
from django.urls import reverse

from apps.orders.models import Order, OrderEvent
from apps.orders.tests.factories import order_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(db):
    user_id = uuid.uuid4()
    order = order_make(user_id, lines=(("A", 1, 500),), history=(("", "pending"),), status="paid")
    OrderEvent.objects.create(type="order.paid", user_id=user_id, aggregate_id=order.id, data={})
    return order


@pytest.fixture
def staff_client(client, db):
    client.force_login(StaffUser.objects.create_superuser("support", "support@example.com", "x" * 20))
    return client


@pytest.mark.parametrize("model", [Order, OrderEvent], ids=lambda model: model._meta.label)
def test_the_admin_lists_searches_and_shows_each_model(staff_client, order, model):
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "ada"})
    assert listing.status_code == 200
    page = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[model.objects.get().pk]))
    assert page.status_code == 200


def test_the_order_page_shows_its_lines_history_and_events(staff_client, order):
    page = staff_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "order.paid: pending after 0 attempt(s)" in page
    assert "Order lines" in page
    assert "Order status changes" in page
