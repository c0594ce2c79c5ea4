"""Writes of the orders service: place an order, settle its payment, cancel it.

Placing an order (`order_create`) is idempotent per customer and Idempotency-Key: the order row,
its lines and its first status commit together, and a retry with the same key finds that row (the
database's unique constraint decides between concurrent retries). The request that created the
order holds its payment lease; concurrent requests with the same key get a 409 while it is held.

Talking to payments happens after that commit, never inside a transaction, with the orders
service's own client-credentials token (scope payments:charge / payments:refund), not the user's:
the charge and the refund are the orders service's decisions, made from the total it computed,
and must be repeatable where no user request is in flight (`manage.py order_payments_settle`,
or a refund long after the user's 5-minute token expired). Payments trusts amounts only from a
client with that scope. The payment's Idempotency-Key is derived from the order
(`order-<id>-charge`, `order-<id>-refund`), so every retry, by anyone, charges at most once.

When payments cannot be reached or gives no decision, the order stays `pending`, nothing is
half-recorded, and the client gets a 503 problem naming the order. Retrying the same POST (same
Idempotency-Key) or running `order_payments_settle` asks payments again with the same payment key:
if the first charge did happen, payments replays it; if not, it happens now. Never twice.
"""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import service_calls
from apps.core.errors import Conflict, ProblemWithDetails, UnprocessableEntity
from apps.core.outbox import outbox_event_add
from apps.orders.models import Order, OrderEvent, OrderLine, OrderStatusChange

logger = logging.getLogger(__name__)

# Longer than the slowest payments call (token fetch plus retried charge, see gunicorn.conf.py).
PAYMENT_LEASE = timedelta(seconds=60)
# The client-facing wait before retrying after payments was unavailable.
RETRY_AFTER_SECONDS = 2


class PaymentsUnavailable(ProblemWithDetails):
    status_code = 503
    default_detail = "The payments service did not decide this order's payment; it stays pending. Retry later."
    default_code = "payments_unavailable"


def _order_problem_members(order: Order) -> dict:
    return {"order_id": str(order.id), "order_status": order.status}


def _fingerprint(*, currency: str, lines: list[dict], payment_method: str) -> str:
    body = {"currency": currency, "lines": lines, "payment_method": payment_method}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _status_change(order: Order, *, to_status: str, reason: str = "") -> None:
    OrderStatusChange.objects.create(order=order, from_status=order.status, to_status=to_status, reason=reason)
    order.status = to_status


def customer_email_fetch() -> str:
    """The caller's email from auth (GET /api/auth/me/ with their own token), for receipts.

    Best effort: an order is never refused because auth could not say.
    """
    try:
        response = service_calls.call("GET", settings.AUTH_URL, "/api/auth/me/", auth="user", timeout=(1.0, 2.0))
    except service_calls.ServiceCallError:
        return ""
    if response.status_code != 200:
        return ""
    email = response.json().get("email", "")
    return email if isinstance(email, str) else ""


@dataclass(frozen=True)
class OrderPlacement:
    order: Order
    replayed: bool  # an earlier request with this Idempotency-Key created the order


def order_create(
    *,
    customer_id: str,
    idempotency_key: str,
    currency: str,
    lines: list[dict],
    payment_method: str,
    customer_email: str | None = None,
) -> OrderPlacement:
    """Place an order and settle its payment; a retry with the same key returns the same order.

    Raises 422 if the key was used for a different order, 409 while another request with the key
    is talking to payments, 503 (order left pending) when payments gives no decision.
    """
    fingerprint = _fingerprint(currency=currency, lines=lines, payment_method=payment_method)
    existing = Order.objects.filter(customer_id=customer_id, idempotency_key=idempotency_key).first()
    if existing is None:
        if customer_email is None:
            customer_email = customer_email_fetch()
        order = Order(
            customer_id=customer_id,
            customer_email=customer_email,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            currency=currency,
            total=sum(line["quantity"] * line["unit_price"] for line in lines),
            payment_method=payment_method,
            payment_lease_until=timezone.now() + PAYMENT_LEASE,
        )
        order.full_clean(validate_unique=False, validate_constraints=False)  # the database decides those
        try:
            with transaction.atomic():
                order.save(force_insert=True)
                OrderLine.objects.bulk_create(
                    OrderLine(order=order, position=position, **line) for position, line in enumerate(lines, start=1)
                )
                OrderStatusChange.objects.create(order=order, to_status=Order.Status.PENDING, reason="order placed")
        except IntegrityError:
            existing = Order.objects.filter(customer_id=customer_id, idempotency_key=idempotency_key).first()
            if existing is None:
                raise
        else:
            return OrderPlacement(order=order_payment_settle(order=order, lease_held=True), replayed=False)
    if existing.request_fingerprint != fingerprint:
        raise UnprocessableEntity(
            "This Idempotency-Key was already used for a different order.", code="idempotency_key_reused"
        )
    if existing.status != Order.Status.PENDING:
        return OrderPlacement(order=existing, replayed=True)
    return OrderPlacement(order=order_payment_settle(order=existing, lease_held=False), replayed=True)


def _lease_acquire(order: Order) -> bool:
    now = timezone.now()
    return bool(
        Order.objects.filter(pk=order.pk)
        .filter(Q(payment_lease_until__isnull=True) | Q(payment_lease_until__lt=now))
        .update(payment_lease_until=now + PAYMENT_LEASE)
    )


def _lease_release(order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(payment_lease_until=None)


def _in_progress(order: Order) -> Conflict:
    return Conflict(
        f"Order {order.id} is being settled by another request with this key; retry shortly.",
        code="idempotency_key_in_use",
    )


def order_payment_settle(*, order: Order, lease_held: bool) -> Order:
    """Ask payments to charge a pending order (idempotently) and record the decision."""
    if not lease_held and not _lease_acquire(order):
        raise _in_progress(order)
    try:
        response = service_calls.call(
            "POST",
            settings.PAYMENTS_URL,
            "/api/payments/",
            auth="service",
            idempotency_key=f"order-{order.id}-charge",
            json={
                "order_id": str(order.id),
                "user_id": str(order.customer_id),
                "amount": order.total,
                "currency": order.currency,
                "payment_method": order.payment_method,
                "receipt_email": order.customer_email,
            },
        )
    except service_calls.ServiceCallError as error:
        _lease_release(order)
        logger.warning("payments unreachable; order stays pending", extra={"order_id": str(order.id)})
        raise PaymentsUnavailable(extensions=_order_problem_members(order), headers=_retry_after()) from error
    payment = _json_body(response)
    if response.status_code in (200, 201) and _is_payment_of(payment, order):
        return _payment_outcome_record(order=order, payment=payment)
    _lease_release(order)
    logger.warning(
        "payments gave no decision; order stays pending",
        extra={"order_id": str(order.id), "status": response.status_code, "problem": payment.get("code", "")},
    )
    if response.status_code == 409 and payment.get("code") == "idempotency_key_in_use":
        raise _in_progress(order)
    raise PaymentsUnavailable(extensions=_order_problem_members(order), headers=_retry_after())


def _is_payment_of(payment: dict, order: Order) -> bool:
    """A decided payment for exactly this order's total; anything else is not a decision to record."""
    return (
        payment.get("status") in ("succeeded", "declined")
        and payment.get("order_id") == str(order.id)
        and payment.get("amount") == order.total
        and payment.get("currency") == order.currency
    )


def _json_body(response) -> dict:
    """The JSON object of a response (a resource or a problem), or {} for anything else."""
    if "json" not in response.headers.get("Content-Type", ""):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after() -> dict:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


def _event_data(order: Order, **more) -> dict:
    return {
        "order_id": str(order.id),
        "total": order.total,
        "currency": order.currency,
        "email": order.customer_email,
        **more,
    }


def _payment_outcome_record(*, order: Order, payment: dict) -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status != Order.Status.PENDING:  # recorded by another request meanwhile
            return order
        order.payment_id = uuid.UUID(payment["id"])
        order.payment_lease_until = None
        order.updated_at = timezone.now()
        if payment["status"] == "succeeded":
            _status_change(order, to_status=Order.Status.PAID, reason=f"payment {payment['id']} succeeded")
            event_type, data = "order.paid", _event_data(order, payment_id=payment["id"])
        else:
            order.decline_code = payment.get("decline_code", "")[:64]
            _status_change(
                order, to_status=Order.Status.PAYMENT_FAILED, reason=f"payment declined: {order.decline_code}"
            )
            event_type, data = "order.payment_failed", _event_data(order, decline_code=order.decline_code)
        order.save()
        outbox_event_add(OrderEvent, event_type=event_type, user_id=order.customer_id, aggregate_id=order.id, data=data)
    return order


def order_cancel(*, order: Order) -> Order:
    """Cancel an order; a paid order is refunded in full first. Cancelling twice changes nothing."""
    if order.status == Order.Status.CANCELLED:
        return order
    if order.status == Order.Status.PENDING:
        raise Conflict(
            "This order's payment is not settled yet; retry placing it (same Idempotency-Key) first.",
            code="payment_pending",
        )
    if order.status == Order.Status.PAYMENT_FAILED:
        return _cancellation_record(order=order, refund=None)
    if not _lease_acquire(order):
        raise _in_progress(order)
    try:
        response = service_calls.call(
            "POST",
            settings.PAYMENTS_URL,
            f"/api/payments/{order.payment_id}/refund/",
            auth="service",
            idempotency_key=f"order-{order.id}-refund",
            json={"reason": "order cancelled"},
        )
    except service_calls.ServiceCallError as error:
        _lease_release(order)
        raise PaymentsUnavailable(
            "The payments service could not refund this order; it stays paid. Retry the cancellation later.",
            extensions=_order_problem_members(order),
            headers=_retry_after(),
        ) from error
    refund = _json_body(response)
    if response.status_code not in (200, 201) or "amount" not in refund:
        _lease_release(order)
        logger.warning(
            "payments refused the refund; order stays paid",
            extra={"order_id": str(order.id), "status": response.status_code, "problem": refund.get("code", "")},
        )
        raise PaymentsUnavailable(
            "The payments service did not refund this order; it stays paid. Retry the cancellation later.",
            extensions=_order_problem_members(order),
            headers=_retry_after(),
        )
    return _cancellation_record(order=order, refund=refund)


def _cancellation_record(*, order: Order, refund: dict | None) -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status == Order.Status.CANCELLED:
            return order
        order.payment_lease_until = None
        order.updated_at = timezone.now()
        if refund is not None:
            order.refund_id = uuid.UUID(refund["id"])
            order.refunded_amount = refund["amount"]
            reason = f"cancelled; refund {refund['id']} of {refund['amount']} {order.currency}"
        else:
            reason = "cancelled; nothing was captured"
        _status_change(order, to_status=Order.Status.CANCELLED, reason=reason)
        order.save()
        outbox_event_add(
            OrderEvent,
            event_type="order.cancelled",
            user_id=order.customer_id,
            aggregate_id=order.id,
            data=_event_data(order, refunded_amount=order.refunded_amount),
        )
    return order


def orders_pending_settle(*, older_than: timedelta) -> dict[str, int]:
    """Settle pending orders nobody is working on (clients that never retried after a 503)."""
    cutoff = timezone.now() - older_than
    counts = {"settled": 0, "still_pending": 0}
    pending = Order.objects.filter(status=Order.Status.PENDING, created_at__lt=cutoff).filter(
        Q(payment_lease_until__isnull=True) | Q(payment_lease_until__lt=timezone.now())
    )
    for order in pending.order_by("created_at")[:500]:
        try:
            order_payment_settle(order=order, lease_held=False)
        except (PaymentsUnavailable, Conflict):
            counts["still_pending"] += 1
        else:
            counts["settled"] += 1
    return counts
