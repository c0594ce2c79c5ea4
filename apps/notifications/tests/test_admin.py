"""The notifications admin renders for a support engineer: an event, its notification and its email."""

import uuid

import pytest
from django.contrib.auth.models import User as StaffUser
from django.urls import reverse

from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def notification(db):
    event = ProcessedEvent.objects.create(event_id=uuid.uuid4(), type="order.paid", source="orders")
    notification = Notification.objects.create(
        user_id=uuid.uuid4(), event=event, type="order.paid", title="t", body="b"
    )
    EmailDelivery.objects.create(notification=notification, recipient="ada@example.com", available_at=event.received_at)
    return notification


@pytest.fixture
def staff_client(client, db):
    client.force_login(StaffUser.objects.create_superuser("support", "support@example.com", "x" * 20))
    return client


@pytest.mark.parametrize("model", [Notification, ProcessedEvent, EmailDelivery], ids=lambda model: model._meta.label)
def test_the_admin_lists_searches_and_shows_each_model(staff_client, notification, model):
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "ada"})
    assert listing.status_code == 200
    page = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[model.objects.get().pk]))
    assert page.status_code == 200
