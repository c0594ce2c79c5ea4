"""Every service's admin pages render for a support engineer, and its OpenAPI document is valid."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User as StaffUser
from django.urls import reverse

from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent
from apps.orders.models import Order, OrderEvent, OrderLine, OrderStatusChange
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def journey(db):
    """One order's journey through the three services' tables."""
    user_id = uuid.uuid4()
    order = Order.objects.create(
        customer_id=user_id,
        idempotency_key="k",
        request_fingerprint="f",
        currency="EUR",
        total=500,
        payment_method="pm_card_visa",
        status="paid",
        payment_id=uuid.uuid4(),
    )
    OrderLine.objects.create(order=order, position=1, sku="A", quantity=1, unit_price=500)
    OrderStatusChange.objects.create(order=order, to_status="pending")
    OrderEvent.objects.create(type="order.paid", user_id=user_id, aggregate_id=order.id, data={})
    payment = Payment.objects.create(
        order_id=order.id,
        user_id=user_id,
        amount=500,
        currency="EUR",
        payment_method="pm_card_visa",
        status="succeeded",
        refunded_amount=500,
        created_by="orders",
    )
    Refund.objects.create(payment=payment, amount=500, created_by="orders")
    PaymentEvent.objects.create(type="payment.refunded", user_id=user_id, aggregate_id=payment.id, data={})
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="k",
        request_fingerprint="f",
        state="completed",
        response_status=201,
        response_body={},
        locked_until=payment.created_at,
        completed_at=payment.created_at,
    )
    event = ProcessedEvent.objects.create(event_id=uuid.uuid4(), type="order.paid", source="orders")
    notification = Notification.objects.create(user_id=user_id, event=event, type="order.paid", title="t", body="b")
    EmailDelivery.objects.create(notification=notification, recipient="ada@example.com", available_at=event.received_at)
    return [
        order,
        order.status_changes.get(),
        order.lines.get(),
        OrderEvent.objects.get(),
        payment,
        payment.refunds.get(),
        PaymentEvent.objects.get(),
        IdempotencyRecord.objects.get(),
        event,
        notification,
        notification.email,
    ]


@pytest.fixture
def staff_client(client, db):
    client.force_login(StaffUser.objects.create_superuser("support", "support@example.com", "x" * 20))
    return client


ADMIN_MODELS = [
    Order,
    OrderEvent,
    Payment,
    Refund,
    IdempotencyRecord,
    PaymentEvent,
    Notification,
    ProcessedEvent,
    EmailDelivery,
]


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda model: model._meta.label)
def test_the_admin_lists_searches_and_shows_each_model(staff_client, journey, model):
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "ada"})
    assert listing.status_code == 200
    instance = model.objects.first()
    page = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk]))
    assert page.status_code == 200


def test_the_order_page_shows_its_lines_history_and_events(staff_client, journey):
    order = journey[0]
    page = staff_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "order.paid: pending after 0 attempt(s)" in page
    assert "Order lines" in page
    assert "Order status changes" in page


@pytest.mark.parametrize("service", ["orders", "payments", "notifications"])
def test_the_openapi_document_is_valid_and_documents_the_errors(service, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(tmp_path / "s.yaml"),
        ],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "SERVICE": service, "DEBUG": "true", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    schema = (tmp_path / "s.yaml").read_text()
    assert "'409':" in schema or "'404':" in schema
    assert "Idempotency-Key" in schema or service == "notifications"
