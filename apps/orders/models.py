"""The orders service's data: orders, their lines, their status history, and the orders outbox.

The customer is the user id from the verified token and the payment is the payments service's id:
plain values, never foreign keys across services.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from apps.core.constraints import OneQueryCheckConstraints
from apps.core.money import MAX_AMOUNT
from apps.core.outbox import DeliveryResult, OutboxEvent, event_post

CURRENCY_CODE = r"^[A-Z]{3}$"


class Order(OneQueryCheckConstraints, models.Model):
    """An order and where its payment stands.

    pending -> paid | payment_failed (declined) | payment_refused (payments refused to decide, for
    good: `payment_error` says why); paid -> cancelling (the cancellation is recorded before the
    refund is asked for) -> cancelled (refunded); payment_failed | payment_refused -> cancelled.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        PAYMENT_FAILED = "payment_failed"
        PAYMENT_REFUSED = "payment_refused"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer_id = models.UUIDField()
    customer_email = models.EmailField(blank=True, help_text="For receipts, from the customer's token.")
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="sha256 of the create request's body.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    currency = models.CharField(max_length=3)
    total = models.BigIntegerField(help_text="Minor units of `currency`: the sum of the lines.")
    payment_method = models.CharField(max_length=64)
    payment_id = models.UUIDField(null=True, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    refund_id = models.UUIDField(null=True, blank=True)
    refunded_amount = models.BigIntegerField(default=0)
    # Why payments refused the charge (payment_refused), or the last refusal of a refund (cancelling).
    payment_error = models.CharField(max_length=500, blank=True, db_default="")
    # Held by the one request that is talking to payments about this order; others get a 409. Set and
    # compared by this service's clock only.
    payment_lease_until = models.DateTimeField(null=True, blank=True)
    # When orders last asked payments about this order (the database's clock): the settle job takes
    # the orders that waited longest first, so orders that keep failing never starve the others.
    payment_attempted_at = models.DateTimeField(db_default=Now())
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["customer_id", "-created_at"], name="order_customer_newest_first"),
            # The settle job's queue: only orders it still has to finish, by their last attempt.
            models.Index(
                fields=["payment_attempted_at", "created_at"],
                name="order_unsettled_by_attempt",
                condition=models.Q(status__in=["pending", "cancelling"]),
            ),
        ]
        constraints = [
            # A retried POST with the same key finds this order instead of creating another.
            models.UniqueConstraint(fields=["customer_id", "idempotency_key"], name="order_idempotency_key_unique"),
            models.CheckConstraint(condition=models.Q(total__gt=0), name="order_total_positive"),
            models.CheckConstraint(condition=models.Q(total__lte=MAX_AMOUNT), name="order_total_at_most_max"),
            models.CheckConstraint(condition=models.Q(currency__regex=CURRENCY_CODE), name="order_currency_code"),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["pending", "paid", "payment_failed", "payment_refused", "cancelling", "cancelled"]
                ),
                name="order_status_known",
            ),
            models.CheckConstraint(
                condition=~models.Q(status__in=["paid", "payment_failed", "cancelling"])
                | models.Q(payment_id__isnull=False),
                name="order_decided_has_payment",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="payment_refused") | ~models.Q(payment_error=""),
                name="order_refused_has_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__gte=0, refunded_amount__lte=models.F("total")),
                name="order_refund_within_total",
            ),
            models.CheckConstraint(
                condition=models.Q(refunded_amount=0) | models.Q(refund_id__isnull=False),
                name="order_refund_has_id",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"


class OrderLine(OneQueryCheckConstraints, models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()
    unit_price = models.BigIntegerField(help_text="Minor units of the order's currency.")

    class Meta:
        ordering = ["order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "position"], name="order_line_position_unique"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="order_line_quantity_positive"),
            models.CheckConstraint(condition=models.Q(unit_price__gte=0), name="order_line_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"

    @property
    def line_total(self) -> int:
        return self.quantity * self.unit_price


class OrderStatusChange(models.Model):
    """One step of an order's journey, written in the transaction that takes the step."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, blank=True)  # empty for the creation
    to_status = models.CharField(max_length=16, choices=Order.Status.choices)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["order", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(to_status__in=Order.Status.values), name="order_status_change_to_known"
            ),
            models.CheckConstraint(
                condition=models.Q(from_status__in=["", *Order.Status.values]),
                name="order_status_change_from_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class OrderEvent(OutboxEvent):
    """The orders outbox: order.paid, order.payment_failed, order.payment_refused, order.cancelled,
    delivered to the notifications service."""

    class Meta(OutboxEvent.Meta):
        verbose_name = "outbox event"

    def deliver(self) -> DeliveryResult:
        return event_post(self, base_url=settings.NOTIFICATIONS_URL, path="/api/notifications/events/")
