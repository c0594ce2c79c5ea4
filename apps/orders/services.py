"""Writes of the orders service: place an order, settle its payment, cancel it, and finish what is left.

Placing an order (`order_create`) is idempotent per customer and Idempotency-Key: the order row,
its lines and its first status commit together, and a retry with the same key finds that row (the
database's unique constraint decides between concurrent retries). The request that created the
order holds its payment lease; concurrent requests with the same key get a 409 while it is held.
The receipt address comes from the caller's verified token: placing an order never calls auth.

Talking to payments (`apps.orders.payments_client`) happens after a commit, never inside a
transaction, with the orders service's own client-credentials token, not the user's: the charge and
the refund are the orders service's decisions, made from the total it computed, and must be
repeatable where no user request is in flight (`manage.py order_payments_settle`). Every answer is
decided, retryable or refused:

- decided: the order becomes paid / payment_failed (or, for a refund, cancelled), with its status
  history and outbox event, in one transaction;
- retryable: nothing is half-recorded; the order stays pending (the client gets a 503, or 409 while
  the same charge is in flight) or cancelling (the client gets 202: the cancellation will finish);
- refused: a charge payments will never make ends in `payment_refused`, terminal and visible, with
  payments' reason in `payment_error`, and nothing charged.

Cancelling a paid order first records the intent (`cancelling`, in its own transaction), then asks
for the refund. Whatever happens next (a timeout, a crash, payments still working on the first
attempt), the order is never again `paid`: the settle job asks payments again with the same refund
key until the refund is recorded and the order `cancelled`.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.core import metrics, service_calls
from apps.core.errors import Conflict, ProblemWithDetails, UnprocessableEntity
from apps.core.outbox import outbox_event_add
from apps.orders import payments_client, selectors
from apps.orders.models import Order, OrderEvent, OrderLine, OrderStatusChange
from apps.orders.payments_client import Outcome, PaymentsAnswer

logger = logging.getLogger(__name__)

# Room above the slowest payments call for the writes around it.
LEASE_MARGIN_SECONDS = 10.0
# The client-facing wait before retrying after payments gave no decision.
RETRY_AFTER_SECONDS = 2
# Orders the settle job takes per run, at most.
SETTLE_BATCH = 500

# Counted when the decision is committed, by the request or the settle job that made it: once per order.
ORDERS_PLACED = metrics.counter(
    "orders_placed",
    "Orders whose payment was decided: paid, payment_failed (declined) or payment_refused (never chargeable).",
    {"outcome": (Order.Status.PAID, Order.Status.PAYMENT_FAILED, Order.Status.PAYMENT_REFUSED)},
)
ORDERS_CANCELLED = metrics.counter(
    "orders_cancelled", "Orders cancelled, by whether a refund was made.", {"refunded": ("true", "false")}
)


def payment_lease() -> timedelta:
    """How long one request may talk to payments about an order before another may: longer than
    the slowest call (a token fetch and a retried POST, `service_calls.service_call_budget_seconds`)."""
    return timedelta(seconds=service_calls.service_call_budget_seconds() + LEASE_MARGIN_SECONDS)


class PaymentsUnavailable(ProblemWithDetails):
    status_code = 503
    default_detail = "The payments service did not decide this order's payment; it stays pending. Retry later."
    default_code = "payments_unavailable"


class PaymentsBadAnswer(ProblemWithDetails):
    status_code = 502
    default_detail = "The payments service answered with something that is not this order's payment; it stays pending."
    default_code = "payments_bad_answer"


def _order_problem_members(order: Order) -> dict:
    return {"order_id": str(order.id), "order_status": order.status}


def _fingerprint(*, currency: str, lines: list[dict], payment_method: str) -> str:
    body = {"currency": currency, "lines": lines, "payment_method": payment_method}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _status_change(order: Order, *, to_status: str, reason: str = "") -> None:
    OrderStatusChange.objects.create(order=order, from_status=order.status, to_status=to_status, reason=reason[:200])
    order.status = to_status


@dataclass(frozen=True)
class OrderPlacement:
    order: Order
    replayed: bool  # an earlier request with this Idempotency-Key created the order


def order_create(
    *,
    customer_id: str,
    customer_email: str,
    idempotency_key: str,
    currency: str,
    lines: list[dict],
    payment_method: str,
) -> OrderPlacement:
    """Place an order and settle its payment; a retry with the same key returns the same order.

    Raises 400 for an order the database would refuse, 422 if the key was used for a different
    order, 409 while another request with the key is talking to payments, 503 (order left pending)
    when payments gives no decision, 502 when its answer is not this order's payment.
    """
    fingerprint = _fingerprint(currency=currency, lines=lines, payment_method=payment_method)
    existing = selectors.order_by_idempotency_key(customer_id=customer_id, idempotency_key=idempotency_key)
    if existing is None:
        lease_until = timezone.now() + payment_lease()
        order = Order(
            customer_id=customer_id,
            customer_email=customer_email,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            currency=currency,
            total=sum(line["quantity"] * line["unit_price"] for line in lines),
            payment_method=payment_method,
            payment_lease_until=lease_until,
        )
        # Every field and check constraint, here rather than as an IntegrityError; uniqueness of the
        # key is the database's to decide between concurrent requests, below.
        order.full_clean(exclude=["idempotency_key"], validate_unique=False)
        order_lines = [OrderLine(order=order, position=position, **line) for position, line in enumerate(lines, 1)]
        for line in order_lines:
            line.full_clean(exclude=["order"], validate_unique=False)
        try:
            with transaction.atomic():
                order.save(force_insert=True)
                OrderLine.objects.bulk_create(order_lines)
                OrderStatusChange.objects.create(order=order, to_status=Order.Status.PENDING, reason="order placed")
        except IntegrityError:
            existing = selectors.order_by_idempotency_key(customer_id=customer_id, idempotency_key=idempotency_key)
            if existing is None:
                raise
        else:
            return OrderPlacement(order=order_payment_settle(order=order, lease_until=lease_until), replayed=False)
    if existing.request_fingerprint != fingerprint:
        raise UnprocessableEntity(
            "This Idempotency-Key was already used for a different order.", code="idempotency_key_reused"
        )
    if existing.status != Order.Status.PENDING:
        return OrderPlacement(order=existing, replayed=True)
    return OrderPlacement(order=order_payment_settle(order=existing), replayed=True)


def _lease_acquire(order: Order) -> timezone.datetime | None:
    """Take the order's payment lease and note the attempt; the lease's end (its holder's token), or
    None while another request holds it."""
    now = timezone.now()
    until = now + payment_lease()
    taken = (
        Order.objects.filter(pk=order.pk)
        .filter(Q(payment_lease_until__isnull=True) | Q(payment_lease_until__lt=now))
        .update(payment_lease_until=until, payment_attempted_at=Now())
    )
    return until if taken else None


def _lease_release(order: Order, lease_until) -> None:
    """Give the lease back, unless it ran out and another request holds it now."""
    Order.objects.filter(pk=order.pk, payment_lease_until=lease_until).update(payment_lease_until=None)


def _in_progress(order: Order) -> Conflict:
    return Conflict(
        f"Order {order.id} is being settled by another request with this key; retry shortly.",
        code="idempotency_key_in_use",
    )


def _retry_after() -> dict:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


def _no_decision(order: Order, answer: PaymentsAnswer) -> ProblemWithDetails:
    """The client's answer when payments did not decide a charge: the order stays pending."""
    if answer.in_progress:
        return _in_progress(order)
    problem = PaymentsBadAnswer if answer.code == "bad_answer" else PaymentsUnavailable
    return problem(extensions=_order_problem_members(order), headers=_retry_after())


def order_payment_settle(*, order: Order, lease_until=None) -> Order:
    """Ask payments to charge a pending order (idempotently) and record the outcome.

    `lease_until`: the lease the caller already holds (the request that created the order).
    """
    if lease_until is None:
        lease_until = _lease_acquire(order)
        if lease_until is None:
            raise _in_progress(order)
    order, answer = _charge_settle(order=order, lease_until=lease_until)
    if answer.outcome == Outcome.RETRYABLE:
        raise _no_decision(order, answer)
    return order


def _charge_settle(*, order: Order, lease_until) -> tuple[Order, PaymentsAnswer]:
    try:
        answer = payments_client.charge(order)
        if answer.outcome == Outcome.DECIDED:
            return _payment_outcome_record(order=order, payment=answer.body), answer
        if answer.outcome == Outcome.REFUSED:
            return _payment_refusal_record(order=order, answer=answer), answer
    except Exception:
        _lease_release(order, lease_until)  # an unexpected failure never leaves the order locked
        raise
    _lease_release(order, lease_until)
    logger.warning(
        "payments gave no decision; order stays pending",
        extra={"order_id": str(order.id), "status": answer.status, "problem": answer.code},
    )
    return order, answer


def _event_data(order: Order, **more) -> dict:
    return {
        "order_id": str(order.id),
        "total": order.total,
        "currency": order.currency,
        "email": order.customer_email,
        **more,
    }


def _event_add(order: Order, event_type: str, data: dict) -> None:
    outbox_event_add(OrderEvent, event_type=event_type, user_id=order.customer_id, aggregate_id=order.id, data=data)


def _payment_outcome_record(*, order: Order, payment: dict) -> Order:
    with transaction.atomic():
        order = selectors.order_locked(order_id=order.pk)
        if order.status != Order.Status.PENDING:  # recorded by another request meanwhile
            return order
        order.payment_id = payment["id"]
        order.payment_lease_until = None
        order.updated_at = Now()
        if payment["status"] == "succeeded":
            _status_change(order, to_status=Order.Status.PAID, reason=f"payment {payment['id']} succeeded")
            event_type, data = "order.paid", _event_data(order, payment_id=str(payment["id"]))
        else:
            order.decline_code = payment["decline_code"]
            _status_change(
                order, to_status=Order.Status.PAYMENT_FAILED, reason=f"payment declined: {order.decline_code}"
            )
            event_type, data = "order.payment_failed", _event_data(order, decline_code=order.decline_code)
        order.save(update_fields=["payment_id", "payment_lease_until", "updated_at", "status", "decline_code"])
        _event_add(order, event_type, data)
        metrics.count_after_commit(ORDERS_PLACED, outcome=order.status)
    order.refresh_from_db(fields=["updated_at"])
    return order


def _payment_refusal_record(*, order: Order, answer: PaymentsAnswer) -> Order:
    """Payments will never charge this order: a terminal state with its reason, nothing charged."""
    with transaction.atomic():
        order = selectors.order_locked(order_id=order.pk)
        if order.status != Order.Status.PENDING:
            return order
        order.payment_error = answer.reason
        order.payment_lease_until = None
        order.updated_at = Now()
        _status_change(order, to_status=Order.Status.PAYMENT_REFUSED, reason=f"payments refused: {answer.code}")
        order.save()
        _event_add(order, "order.payment_refused", _event_data(order, reason=answer.code))
        metrics.count_after_commit(ORDERS_PLACED, outcome=order.status)
    logger.warning(
        "payments refused the charge; the order is refused for good",
        extra={"order_id": str(order.id), "status": answer.status, "problem": answer.code},
    )
    order.refresh_from_db(fields=["updated_at"])
    return order


def order_cancel(*, order: Order) -> Order:
    """Cancel an order; a paid order is refunded in full. Cancelling twice changes nothing.

    Returns the order `cancelled`, or `cancelling` when the refund is recorded as wanted but not yet
    confirmed by payments (the settle job finishes it; so does cancelling again).
    """
    if order.status == Order.Status.CANCELLED:
        return order
    if order.status == Order.Status.PENDING:
        raise Conflict(
            "This order's payment is not settled yet; retry placing it (same Idempotency-Key) first.",
            code="payment_pending",
        )
    if order.status in (Order.Status.PAYMENT_FAILED, Order.Status.PAYMENT_REFUSED):
        return _cancellation_record(order=order, refund=None)
    if order.status == Order.Status.PAID:
        order = _cancellation_request(order=order)
    return order_refund_settle(order=order)


def _cancellation_request(*, order: Order) -> Order:
    """Record that the order is to be cancelled, before payments is asked for anything."""
    with transaction.atomic():
        order = selectors.order_locked(order_id=order.pk)
        if order.status == Order.Status.PAID:
            order.updated_at = Now()
            _status_change(order, to_status=Order.Status.CANCELLING, reason="cancellation requested; refund next")
            order.save()
    return order


def order_refund_settle(*, order: Order) -> Order:
    """Ask payments for the refund of a cancelling order and record it; the order as it then is."""
    return _refund_settle(order=order)[0]


def _refund_settle(*, order: Order) -> tuple[Order, PaymentsAnswer | None]:
    if order.status != Order.Status.CANCELLING:
        return order, None
    lease_until = _lease_acquire(order)
    if lease_until is None:  # another request is asking payments right now
        return order, None
    try:
        answer = payments_client.refund(order)
        if answer.outcome == Outcome.DECIDED:
            return _cancellation_record(order=order, refund=answer.body), answer
    except Exception:
        _lease_release(order, lease_until)  # an unexpected failure never leaves the order locked
        raise
    Order.objects.filter(pk=order.pk, payment_lease_until=lease_until).update(
        payment_lease_until=None, payment_error=answer.reason if answer.outcome == Outcome.REFUSED else ""
    )
    logger.warning(
        "refund not confirmed; the order stays cancelling",
        extra={"order_id": str(order.id), "status": answer.status, "problem": answer.code},
    )
    order.refresh_from_db()
    return order, answer


def _cancellation_record(*, order: Order, refund: dict | None) -> Order:
    with transaction.atomic():
        order = selectors.order_locked(order_id=order.pk)
        if order.status == Order.Status.CANCELLED:
            return order
        order.payment_lease_until = None
        order.payment_error = ""
        order.updated_at = Now()
        if refund is not None:
            order.refund_id = refund["id"]
            order.refunded_amount = refund["amount"]
            reason = f"cancelled; refund {refund['id']} of {refund['amount']} {order.currency}"
        else:
            reason = "cancelled; nothing was captured"
        _status_change(order, to_status=Order.Status.CANCELLED, reason=reason)
        order.save()
        _event_add(order, "order.cancelled", _event_data(order, refunded_amount=order.refunded_amount))
        metrics.count_after_commit(ORDERS_CANCELLED, refunded="true" if refund is not None else "false")
    order.refresh_from_db(fields=["updated_at"])
    return order


@dataclass
class SettleReport:
    settled: int = 0  # decided: paid, payment_failed, payment_refused or cancelled
    still_open: int = 0  # asked (or held by a request asking), but still pending or cancelling
    stopped: bool = False  # payments gave no answer or failed: the rest waits for the next run


def orders_unsettled_settle(*, older_than: timedelta, limit: int = SETTLE_BATCH) -> SettleReport:
    """Finish orders nobody is working on: pending charges (clients that never retried after a 503)
    and requested cancellations. Those asked about longest ago go first; the run stops at the first
    order payments cannot answer for, instead of waiting out every remaining order's timeouts."""
    report = SettleReport()
    due = (
        Order.objects.filter(
            status__in=[Order.Status.PENDING, Order.Status.CANCELLING], payment_attempted_at__lt=Now() - older_than
        )
        .filter(Q(payment_lease_until__isnull=True) | Q(payment_lease_until__lt=timezone.now()))
        .order_by("payment_attempted_at", "created_at")
    )
    for candidate in due[:limit]:
        order, answer = candidate, None
        if order.status == Order.Status.PENDING:
            lease_until = _lease_acquire(order)
            if lease_until is not None:
                order, answer = _charge_settle(order=order, lease_until=lease_until)
        else:
            order, answer = _refund_settle(order=order)
        if order.status in (Order.Status.PENDING, Order.Status.CANCELLING):
            report.still_open += 1
        else:
            report.settled += 1
        if answer is not None and answer.unreachable:
            report.stopped = True
            break
    return report
