"""Writes of the payments service: charges and refunds under Stripe's idempotency semantics.

Idempotency (per calling client and Idempotency-Key):
- the first request writes an in-flight record and commits it, then does the work; the payment (or
  refund), its outbox event and the stored response commit together in one transaction;
- the same key with the same request (method, path and body) gets the stored response again,
  flagged as a replay; with a different request, 422; while the first is still in flight, 409;
- a request that fails validation or a business rule stores nothing: its record is deleted, so
  the key can be used again;
- an in-flight record whose holder died (past `locked_until`) is taken over by the next retry.

Amounts: only a service client with the `payments:charge` scope can charge (the orders service,
which owns the order and computes its total). Payments keeps the order's amount and currency from
its first charge request and refuses (422) any later charge of that order that differs.
"""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from apps.core.errors import Conflict, UnprocessableEntity
from apps.core.outbox import outbox_event_add
from apps.payments import provider
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund
from apps.payments.serializers import PaymentOutputSerializer, RefundWithPaymentOutputSerializer

# How long a request may hold its key before another request with the key may take over.
IDEMPOTENCY_LEASE = timedelta(seconds=30)
IN_FLIGHT_DETAIL = "A request with this Idempotency-Key is in progress; retry later."


@dataclass(frozen=True)
class Answer:
    """What the API sends back: the status and body, and whether they are a stored replay."""

    status: int
    body: dict
    replayed: bool = False


def request_fingerprint(*, method: str, path: str, body: dict) -> str:
    canonical = json.dumps({"method": method, "path": path, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_begin(*, client_id: str, key: str, fingerprint: str) -> IdempotencyRecord | Answer:
    """The record this request now holds, or the stored answer to replay; 422 or 409 otherwise."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                client_id=client_id, key=key, request_fingerprint=fingerprint, locked_until=now + IDEMPOTENCY_LEASE
            )
    except IntegrityError:
        pass  # the key is known: decide from the existing record
    record = IdempotencyRecord.objects.filter(client_id=client_id, key=key).first()
    if record is None:  # its request failed and released the key meanwhile
        raise Conflict(IN_FLIGHT_DETAIL, code="idempotency_key_in_use")
    if record.request_fingerprint != fingerprint:
        raise UnprocessableEntity(
            "This Idempotency-Key was already used with a different request.", code="idempotency_key_reused"
        )
    if record.state == IdempotencyRecord.State.COMPLETED:
        IdempotencyRecord.objects.filter(pk=record.pk).update(replays=F("replays") + 1)
        return Answer(status=record.response_status, body=record.response_body, replayed=True)
    if record.locked_until > now:
        raise Conflict(IN_FLIGHT_DETAIL, code="idempotency_key_in_use")
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.IN_FLIGHT, locked_until=record.locked_until
    ).update(locked_until=now + IDEMPOTENCY_LEASE)
    if not taken:
        raise Conflict(IN_FLIGHT_DETAIL, code="idempotency_key_in_use")
    return record


def _idempotent(*, client_id: str, key: str, fingerprint: str, work: Callable[[IdempotencyRecord], Answer]) -> Answer:
    begun = idempotency_begin(client_id=client_id, key=key, fingerprint=fingerprint)
    if isinstance(begun, Answer):
        return begun
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.select_for_update().get(pk=begun.pk)
            if record.state == IdempotencyRecord.State.COMPLETED:  # finished by a request that took over
                return Answer(status=record.response_status, body=record.response_body, replayed=True)
            answer = work(record)
            record.state = IdempotencyRecord.State.COMPLETED
            record.response_status = answer.status
            record.response_body = answer.body
            record.completed_at = timezone.now()
            record.save(update_fields=["state", "response_status", "response_body", "completed_at"])
            return answer
    except (exceptions.APIException, DjangoValidationError):
        # Refused requests are not stored: the key is free for a corrected request.
        IdempotencyRecord.objects.filter(pk=begun.pk, state=IdempotencyRecord.State.IN_FLIGHT).delete()
        raise


def payment_charge(
    *,
    client_id: str,
    idempotency_key: str,
    path: str,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    amount: int,
    currency: str,
    payment_method: str,
    receipt_email: str = "",
) -> Answer:
    """Charge an order once per key: 201 with the payment, succeeded or declined by the provider."""
    body = {
        "order_id": str(order_id),
        "user_id": str(user_id),
        "amount": amount,
        "currency": currency,
        "payment_method": payment_method,
        "receipt_email": receipt_email,
    }
    fingerprint = request_fingerprint(method="POST", path=path, body=body)

    def work(record: IdempotencyRecord) -> Answer:
        earlier = Payment.objects.filter(order_id=order_id).first()
        if earlier is not None and (earlier.amount, earlier.currency, earlier.user_id) != (amount, currency, user_id):
            raise UnprocessableEntity(
                f"Order {order_id} was charged as {earlier.amount} {earlier.currency}; amount and currency must match.",
                code="amount_mismatch",
            )
        if Payment.objects.filter(order_id=order_id, status=Payment.Status.SUCCEEDED).exists():
            raise Conflict(f"Order {order_id} is already paid.", code="already_paid")
        decision = provider.charge_decide(payment_method=payment_method, amount=amount, currency=currency)
        payment = Payment(
            order_id=order_id,
            user_id=user_id,
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            receipt_email=receipt_email,
            status=Payment.Status.SUCCEEDED if decision.succeeded else Payment.Status.DECLINED,
            decline_code=decision.decline_code,
            created_by=client_id,
        )
        payment.full_clean()
        try:
            with transaction.atomic():
                payment.save(force_insert=True)
        except IntegrityError:  # captured concurrently under another key
            raise Conflict(f"Order {order_id} is already paid.", code="already_paid") from None
        payment.refresh_from_db()
        return Answer(status=201, body=dict(PaymentOutputSerializer(payment).data))

    return _idempotent(client_id=client_id, key=idempotency_key, fingerprint=fingerprint, work=work)


def payment_refund(
    *,
    client_id: str,
    idempotency_key: str,
    path: str,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str,
) -> Answer:
    """Refund (part of) a captured payment once per key; never more than what remains captured."""
    fingerprint = request_fingerprint(method="POST", path=path, body={"amount": amount, "reason": reason})

    def work(record: IdempotencyRecord) -> Answer:
        payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
        if payment is None:
            raise exceptions.NotFound("No such payment.")
        if payment.status != Payment.Status.SUCCEEDED:
            raise Conflict("A declined payment captured nothing to refund.", code="not_captured")
        refundable = payment.refundable_amount
        if refundable == 0:
            raise Conflict("This payment is already fully refunded.", code="already_refunded")
        refund_amount = refundable if amount is None else amount
        if refund_amount > refundable:
            raise UnprocessableEntity(
                f"A refund of {refund_amount} exceeds the {refundable} {payment.currency} still captured.",
                code="refund_exceeds_captured",
            )
        refund = Refund(payment=payment, amount=refund_amount, reason=reason, created_by=client_id)
        refund.full_clean()
        refund.save(force_insert=True)
        Payment.objects.filter(pk=payment.pk).update(
            refunded_amount=F("refunded_amount") + refund_amount, updated_at=timezone.now()
        )
        payment.refresh_from_db()
        refund.refresh_from_db()
        outbox_event_add(
            PaymentEvent,
            event_type="payment.refunded",
            user_id=payment.user_id,
            aggregate_id=payment.id,
            data={
                "payment_id": str(payment.id),
                "order_id": str(payment.order_id),
                "refund_id": str(refund.id),
                "amount": refund_amount,
                "currency": payment.currency,
                "refunded_amount": payment.refunded_amount,
                "email": payment.receipt_email,
            },
        )
        return Answer(status=201, body=dict(RefundWithPaymentOutputSerializer(refund).data))

    return _idempotent(client_id=client_id, key=idempotency_key, fingerprint=fingerprint, work=work)
