"""The payments service's data: payments (charges), refunds, idempotency records, and its outbox.

Orders are known only by id and users only by the id from their token: no key crosses services.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from apps.core.constraints import OneQueryCheckConstraints
from apps.core.outbox import DeliveryResult, OutboxEvent, event_post

CURRENCY_CODE = r"^[A-Z]{3}$"


class Payment(OneQueryCheckConstraints, models.Model):
    """One charge of an order, as the provider decided it. `refunded_amount` never exceeds `amount`."""

    # A second capture of an order is refused by the charge before it asks the provider (the order's
    # earlier charges are read first: 409 already_paid); what gets past that read is a second charge
    # under another key racing this one, which only the INSERT decides (IntegrityError, the same
    # 409). Validating it in full_clean() cost a query of its own, built afresh by the ORM each time:
    # about 2.2 ms of CPU per charge, a fifth of a placement, to decide nothing the database does not.
    constraints_left_to_the_database = ("payment_one_capture_per_order",)

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        DECLINED = "declined"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order_id = models.UUIDField(db_index=True)
    user_id = models.UUIDField(db_index=True)
    amount = models.BigIntegerField(help_text="Minor units of `currency`.")
    currency = models.CharField(max_length=3)
    payment_method = models.CharField(max_length=64)
    receipt_email = models.EmailField(blank=True, help_text="Where the customer's receipts go, if known.")
    status = models.CharField(max_length=16, choices=Status.choices)
    decline_code = models.CharField(max_length=64, blank=True)
    refunded_amount = models.BigIntegerField(default=0)
    created_by = models.CharField(max_length=64, help_text="The service client that asked for the charge.")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=models.Q(currency__regex=CURRENCY_CODE), name="payment_currency_code"),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__gte=0, refunded_amount__lte=models.F("amount")),
                name="payment_refund_within_captured",
            ),
            models.CheckConstraint(
                condition=models.Q(status="succeeded") | models.Q(refunded_amount=0),
                name="payment_only_captured_is_refunded",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["succeeded", "declined"]), name="payment_status_known"
            ),
            models.CheckConstraint(
                condition=models.Q(status="declined") | models.Q(decline_code=""),
                name="payment_decline_code_if_declined",
            ),
            # One capture per order: a second charge of a paid order is a bug, refused by the database.
            models.UniqueConstraint(
                fields=["order_id"], condition=models.Q(status="succeeded"), name="payment_one_capture_per_order"
            ),
        ]

    def __str__(self) -> str:
        return f"payment {self.id} ({self.status}, {self.amount} {self.currency})"

    @property
    def refundable_amount(self) -> int:
        return self.amount - self.refunded_amount if self.status == self.Status.SUCCEEDED else 0


class Refund(OneQueryCheckConstraints, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"refund {self.id} of {self.amount} on payment {self.payment_id}"


class IdempotencyRecord(OneQueryCheckConstraints, models.Model):
    """An Idempotency-Key of one client: what was asked (a fingerprint) and what was answered.

    A record is written (in flight) before the work starts and completed with the response in the
    same transaction that records the work's outcome, so a stored response always matches what
    happened. The request itself is kept (`operation`, `request_body`) so that the sweeper can
    finish work whose request died half way (`manage.py payments_requests_finish`).
    """

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETED = "completed"

    class Operation(models.TextChoices):
        CHARGE = "charge"
        REFUND = "refund"

    client_id = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    operation = models.CharField(max_length=16, choices=Operation.choices, blank=True, db_default="")
    request_body = models.JSONField(null=True, blank=True, help_text="What the work needs to be redone.")
    # Set and compared by this service's clock only; its value also tells its holder it still holds it.
    locked_until = models.DateTimeField(help_text="An in-flight record older than this may be taken over.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    replays = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["client_id", "key"], name="idempotency_key_unique_per_client"),
            models.CheckConstraint(
                condition=models.Q(state="in_flight") | models.Q(response_status__isnull=False),
                name="idempotency_completed_has_response",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["in_flight", "completed"]), name="idempotency_state_known"
            ),
            models.CheckConstraint(
                condition=models.Q(state="in_flight")
                | models.Q(completed_at__isnull=False, response_body__isnull=False),
                name="idempotency_completed_has_body_and_time",
            ),
            models.CheckConstraint(
                condition=models.Q(operation__in=["", "charge", "refund"]), name="idempotency_operation_known"
            ),
        ]
        indexes = [
            # The sweeper's queue (in-flight records past their lease) and the prune (completed ones).
            models.Index(fields=["state", "locked_until"], name="idempotency_state_lock"),
            models.Index(fields=["completed_at"], name="idempotency_completed", condition=models.Q(state="completed")),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key} ({self.state})"


class PaymentEvent(OutboxEvent):
    """The payments outbox: payment.refunded, delivered to the notifications service by
    `manage.py outbox_relay`."""

    class Meta(OutboxEvent.Meta):
        verbose_name = "outbox event"

    def deliver(self) -> DeliveryResult:
        return event_post(self, base_url=settings.NOTIFICATIONS_URL, path="/api/notifications/events/")
