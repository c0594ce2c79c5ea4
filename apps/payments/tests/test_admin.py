"""The payments admin renders for a support engineer: a refunded payment in payments' own tables."""

import uuid

import pytest
from django.contrib.auth.models import User as StaffUser
from django.urls import reverse

from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def payment(db):
    user_id = uuid.uuid4()
    payment = Payment.objects.create(
        order_id=uuid.uuid4(),
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
    return payment


@pytest.fixture
def staff_client(client, db):
    client.force_login(StaffUser.objects.create_superuser("support", "support@example.com", "x" * 20))
    return client


@pytest.mark.parametrize(
    "model", [Payment, Refund, IdempotencyRecord, PaymentEvent], ids=lambda model: model._meta.label
)
def test_the_admin_lists_searches_and_shows_each_model(staff_client, payment, model):
    opts = model._meta
    listing = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "ada"})
    assert listing.status_code == 200
    page = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[model.objects.get().pk]))
    assert page.status_code == 200
