"""Writes of the payments service: charges and refunds under Stripe's idempotency semantics.

Idempotency (per calling client and Idempotency-Key):
- the first request writes an in-flight record (with the request itself) and commits it; the
  processor is then called with no transaction open; the outcome (the payment or refund), its outbox
  event and the stored response then commit together in one short transaction;
- the same key with the same request (method, path and body) gets the stored response again,
  flagged as a replay; with a different request, 422; while the first is still in flight, 409;
- a request refused by validation or a business rule stores nothing: its record is deleted, so the
  key can be used again. This differs from Stripe, which stores every answer once the endpoint has
  started: here a corrected request may reuse its key;
- any other failure (the processor down, a bug, the database) ends the record's lease at once: the
  next retry with the key takes the record over instead of getting 409s until the lease runs out;
- an in-flight record whose holder died is taken over by the next retry after its lease, and
  `manage.py payments_requests_finish` finishes it from the stored request if no retry comes. The
  processor is asked under the record's own key, so finishing a charge never charges twice.

Amounts: only a service client with the `payments:charge` scope can charge (the orders service,
which owns the order and computes its total). Payments keeps the order's amount and currency from
its first charge request and refuses (422) any later charge of that order that differs.
"""

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone
from rest_framework import exceptions

from apps.core import metrics
from apps.core.errors import Conflict, ServiceUnavailable, UnprocessableEntity
from apps.core.outbox import outbox_event_add
from apps.core.serializers import output_of
from apps.payments import provider, selectors
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund
from apps.payments.serializers import PaymentOutputSerializer, RefundWithPaymentOutputSerializer

logger = logging.getLogger(__name__)

# How long a request may hold its key before another request with the key may take over: longer
# than the processor call it waits on, plus the writes around it.
IDEMPOTENCY_LEASE = timedelta(seconds=provider.CALL_BUDGET_SECONDS + 20)
IN_FLIGHT_DETAIL = "A request with this Idempotency-Key is in progress; retry later."

# Counted when the payment or refund is committed (a replay counts nothing). Amounts are in minor
# units of the currency, so only sums within one currency mean anything.
CHARGES = metrics.counter(
    "payments_charges",
    "Charges decided by the processor, by outcome.",
    {"outcome": (Payment.Status.SUCCEEDED, Payment.Status.DECLINED)},
)
CHARGED_AMOUNT = metrics.counter(
    "payments_charged_amount_minor_units",
    "Amount of charges by outcome and currency, in minor units of the currency.",
    {"outcome": (), "currency": ()},  # currencies are not known in advance: no series before the first
)
REFUNDS = metrics.counter("payments_refunds", "Refunds made.")
REFUNDED_AMOUNT = metrics.counter(
    "payments_refunded_amount_minor_units", "Amount refunded by currency, in minor units of it.", {"currency": ()}
)


class ProviderUnavailable(ServiceUnavailable):
    default_detail = "The card processor could not be reached; nothing was charged. Retry with the same key."
    default_code = "provider_unavailable"


@dataclass(frozen=True)
class Answer:
    """What the API sends back: the status and body, and whether they are a stored replay."""

    status: int
    body: dict
    replayed: bool = False


def request_fingerprint(*, method: str, path: str, body: dict) -> str:
    canonical = json.dumps({"method": method, "path": path, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_begin(
    *, client_id: str, key: str, fingerprint: str, operation: str = "", request_body: dict | None = None
) -> IdempotencyRecord | Answer:
    """The record this request now holds, or the stored answer to replay; 422 or 409 otherwise."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                client_id=client_id,
                key=key,
                request_fingerprint=fingerprint,
                operation=operation,
                request_body=request_body,
                locked_until=now + IDEMPOTENCY_LEASE,
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
    return _take_over(record, now=now)


def _take_over(record: IdempotencyRecord, *, now) -> IdempotencyRecord:
    """Hold an in-flight record whose lease ran out (its holder died or gave it up)."""
    until = now + IDEMPOTENCY_LEASE
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.IN_FLIGHT, locked_until=record.locked_until
    ).update(locked_until=until)
    if not taken:
        raise Conflict(IN_FLIGHT_DETAIL, code="idempotency_key_in_use")
    record.locked_until = until
    return record


def _held(record: IdempotencyRecord) -> dict:
    """The filter that matches the record only while this request still holds it."""
    return {"pk": record.pk, "state": IdempotencyRecord.State.IN_FLIGHT, "locked_until": record.locked_until}


@contextlib.contextmanager
def _key_released_on_failure(record: IdempotencyRecord) -> Iterator[None]:
    try:
        yield
    except ProviderUnavailable:
        _lease_end(record)
        raise
    except (exceptions.APIException, DjangoValidationError):
        # Refused requests are not stored: the key is free for a corrected request.
        IdempotencyRecord.objects.filter(**_held(record)).delete()
        raise
    except Exception:
        logger.exception("idempotent request failed; its key is free for a retry", extra={"key": record.key})
        _lease_end(record)
        raise


def _lease_end(record: IdempotencyRecord) -> None:
    """End the lease now: the next retry with the key takes the record over at once (same request)."""
    with contextlib.suppress(DatabaseError):  # the database itself failing: the lease runs out instead
        IdempotencyRecord.objects.filter(**_held(record)).update(locked_until=timezone.now())


def _complete(record: IdempotencyRecord, store: Callable[[], Answer]) -> Answer:
    """Run `store` (the outcome's writes) and store its answer, in one short transaction."""
    with transaction.atomic():
        locked = selectors.idempotency_record_locked(record_id=record.pk)
        if locked.state == IdempotencyRecord.State.COMPLETED:  # finished by a request that took over
            return Answer(status=locked.response_status, body=locked.response_body, replayed=True)
        if locked.locked_until != record.locked_until:  # our lease ran out and another request holds it
            raise Conflict(IN_FLIGHT_DETAIL, code="idempotency_key_in_use")
        answer = store()
        locked.state = IdempotencyRecord.State.COMPLETED
        locked.response_status = answer.status
        locked.response_body = answer.body
        locked.completed_at = Now()
        locked.save(update_fields=["state", "response_status", "response_body", "completed_at"])
        return answer


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
    """Charge an order once per key: 201 with the payment, succeeded or declined by the processor."""
    body = {
        "order_id": str(order_id),
        "user_id": str(user_id),
        "amount": amount,
        "currency": currency,
        "payment_method": payment_method,
        "receipt_email": receipt_email,
    }
    begun = idempotency_begin(
        client_id=client_id,
        key=idempotency_key,
        fingerprint=request_fingerprint(method="POST", path=path, body=body),
        operation=IdempotencyRecord.Operation.CHARGE,
        request_body=body,
    )
    if isinstance(begun, Answer):
        return begun
    return _charge_run(begun, body)


def _charge_allowed(*, order_id, user_id: uuid.UUID, amount: int, currency: str) -> None:
    earlier = selectors.order_charges(order_id=order_id)  # newest first
    if earlier and (earlier[0].amount, earlier[0].currency, earlier[0].user_id) != (amount, currency, user_id):
        raise UnprocessableEntity(
            f"Order {order_id} was charged as {earlier[0].amount} {earlier[0].currency}; "
            "amount and currency must match.",
            code="amount_mismatch",
        )
    if any(payment.status == Payment.Status.SUCCEEDED for payment in earlier):
        raise Conflict(f"Order {order_id} is already paid.", code="already_paid")


def _charge_run(record: IdempotencyRecord, body: dict) -> Answer:
    """The three steps of a charge whose key `record` holds: check, ask the processor, record."""
    order_id, user_id = uuid.UUID(body["order_id"]), uuid.UUID(body["user_id"])
    with _key_released_on_failure(record):
        _charge_allowed(order_id=order_id, user_id=user_id, amount=body["amount"], currency=body["currency"])
        try:
            decision = provider.charge_decide(
                payment_method=body["payment_method"],
                amount=body["amount"],
                currency=body["currency"],
                idempotency_key=f"{record.client_id}:{record.key}",
            )
        except provider.ProviderError as error:
            raise ProviderUnavailable() from error

        def store() -> Answer:
            payment = Payment(
                order_id=order_id,
                user_id=user_id,
                amount=body["amount"],
                currency=body["currency"],
                payment_method=body["payment_method"],
                receipt_email=body["receipt_email"],
                status=Payment.Status.SUCCEEDED if decision.succeeded else Payment.Status.DECLINED,
                decline_code=decision.decline_code,
                created_by=record.client_id,
            )
            # The id is a fresh UUID: its uniqueness is the database's, not worth a query.
            payment.full_clean(validate_unique=False)
            try:
                with transaction.atomic():
                    payment.save(force_insert=True)  # created_at and updated_at come back with the INSERT
            except IntegrityError:  # captured concurrently under another key
                raise Conflict(f"Order {order_id} is already paid.", code="already_paid") from None
            metrics.count_after_commit(CHARGES, outcome=payment.status)
            metrics.count_after_commit(
                CHARGED_AMOUNT, payment.amount, outcome=payment.status, currency=payment.currency
            )
            return Answer(status=201, body=output_of(PaymentOutputSerializer, payment))

        return _complete(record, store)


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
    begun = idempotency_begin(
        client_id=client_id,
        key=idempotency_key,
        fingerprint=request_fingerprint(method="POST", path=path, body={"amount": amount, "reason": reason}),
        operation=IdempotencyRecord.Operation.REFUND,
        request_body={"payment_id": str(payment_id), "amount": amount, "reason": reason},
    )
    if isinstance(begun, Answer):
        return begun
    return _refund_run(begun, begun.request_body)


def _refund_run(record: IdempotencyRecord, body: dict) -> Answer:
    """A refund whose key `record` holds. The simulated processor needs no call for a refund (a real
    one would be called here, before `_complete`, with no transaction open)."""
    payment_id, amount, reason = uuid.UUID(body["payment_id"]), body["amount"], body["reason"]

    def store() -> Answer:
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
        refund = Refund(payment=payment, amount=refund_amount, reason=reason, created_by=record.client_id)
        refund.full_clean()
        refund.save(force_insert=True)
        Payment.objects.filter(pk=payment.pk).update(
            refunded_amount=F("refunded_amount") + refund_amount, updated_at=Now()
        )
        payment.refresh_from_db()
        refund.refresh_from_db()
        metrics.count_after_commit(REFUNDS)
        metrics.count_after_commit(REFUNDED_AMOUNT, refund_amount, currency=payment.currency)
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
        return Answer(status=201, body=output_of(RefundWithPaymentOutputSerializer, refund))

    with _key_released_on_failure(record):
        return _complete(record, store)


@dataclass
class FinishReport:
    finished: int = 0  # completed from the stored request
    refused: int = 0  # the request turned out to be refused: the key was freed
    failed: int = 0  # could not be finished now; its lease ran out again for the next run


def payments_requests_finish(*, limit: int = 200) -> FinishReport:
    """Finish requests whose holder died after taking their key: in-flight records past their lease,
    redone from the stored request (the processor answers the same under the record's key)."""
    report = FinishReport()
    now = timezone.now()
    abandoned = IdempotencyRecord.objects.filter(
        state=IdempotencyRecord.State.IN_FLIGHT, locked_until__lt=now, request_body__isnull=False
    ).exclude(operation="")
    for record in abandoned.order_by("locked_until")[:limit]:
        try:
            held = _take_over(record, now=now)
            run = _charge_run if held.operation == IdempotencyRecord.Operation.CHARGE else _refund_run
            run(held, held.request_body)
        except (exceptions.APIException, DjangoValidationError):
            report.refused += 1
        except Exception:
            logger.exception("an abandoned request could not be finished", extra={"key": record.key})
            report.failed += 1
        else:
            report.finished += 1
    return report


def idempotency_records_prune(*, older_than: timedelta, chunk_size: int = 1000) -> int:
    """Forget completed keys after `older_than` (Stripe keeps them 24 hours): a key reused after that
    is a new request. In-flight records are left to the sweeper."""
    deleted = 0
    while True:
        chunk = list(
            IdempotencyRecord.objects.filter(
                state=IdempotencyRecord.State.COMPLETED, completed_at__lt=Now() - older_than
            ).values_list("pk", flat=True)[:chunk_size]
        )
        if not chunk:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=chunk).delete()[0]
