"""The orders service's calls to payments, each answer sorted into one of three outcomes.

- decided: payments answered with a charge (succeeded or declined) or a refund of exactly this
  order, its body checked field by field;
- retryable: no answer, a 5xx, the same key still in flight at payments (409 idempotency_key_in_use:
  "in progress"), a 401/408/429, or a 2xx whose body is not what was asked for; asking again with the
  same key is safe and may succeed;
- refused: any other 4xx (400, 403, 404, 409 already_paid, 422 amount_mismatch, ...): payments will
  give the same answer however often it is asked. `reason` says which and why, for the order's record.

Calls use this service's client-credentials token and keys derived from the order
(`order-<id>-charge`, `order-<id>-refund`), so every retry by anyone is the same charge or refund.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings

from apps.core import service_calls
from apps.orders.models import Order

RETRYABLE_STATUSES = frozenset({401, 408, 425, 429})


class Outcome(StrEnum):
    DECIDED = "decided"
    RETRYABLE = "retryable"
    REFUSED = "refused"


@dataclass(frozen=True)
class PaymentsAnswer:
    outcome: Outcome
    body: dict = field(default_factory=dict)  # the checked payment or refund when decided
    status: int | None = None  # payments' HTTP status; None when it gave no answer
    code: str = ""  # the problem's code, or why the answer was not usable
    reason: str = ""

    @property
    def unreachable(self) -> bool:
        """Payments is down or failing (no answer or a 5xx): asking about other orders now is futile."""
        return self.outcome == Outcome.RETRYABLE and (self.status is None or self.status >= 500)

    @property
    def in_progress(self) -> bool:
        return self.status == 409 and self.code == "idempotency_key_in_use"


def _uuid(value) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _is_int(value) -> bool:
    return type(value) is int


def _checked_payment(body: dict, order: Order) -> dict | None:
    """A charge of exactly this order with every field the order records, or None."""
    status, decline_code = body.get("status"), body.get("decline_code")
    well_formed = (
        _uuid(body.get("id")) is not None
        and _uuid(body.get("order_id")) == order.id
        and status in ("succeeded", "declined")
        and _is_int(body.get("amount"))
        and body["amount"] == order.total
        and body.get("currency") == order.currency
        and isinstance(decline_code, str)
        and len(decline_code) <= 64
        and (status == "succeeded") == (decline_code == "")
    )
    return {"id": _uuid(body["id"]), "status": status, "decline_code": decline_code} if well_formed else None


def _checked_refund(body: dict, order: Order) -> dict | None:
    """A refund of this order's payment within its total, or None."""
    well_formed = (
        _uuid(body.get("id")) is not None
        and _uuid(body.get("payment_id")) == order.payment_id
        and _is_int(body.get("amount"))
        and 0 < body["amount"] <= order.total
    )
    return {"id": _uuid(body["id"]), "amount": body["amount"]} if well_formed else None


def _sorted(response, order: Order, check) -> PaymentsAnswer:
    body = service_calls.json_object(response) or {}
    code = body.get("code") if isinstance(body.get("code"), str) else ""
    detail = body.get("detail") if isinstance(body.get("detail"), str) else ""
    status = response.status_code
    if status in (200, 201):
        checked = check(body, order)
        if checked is None:
            reason = "payments answered 2xx with an unusable body"
            return PaymentsAnswer(Outcome.RETRYABLE, status=status, code="bad_answer", reason=reason)
        return PaymentsAnswer(Outcome.DECIDED, body=checked, status=status)
    reason = f"payments answered {status} {code}: {detail}".strip()[:500]
    if status >= 500 or status in RETRYABLE_STATUSES or (status == 409 and code == "idempotency_key_in_use"):
        return PaymentsAnswer(Outcome.RETRYABLE, status=status, code=code, reason=reason)
    return PaymentsAnswer(Outcome.REFUSED, status=status, code=code or "refused", reason=reason)


def _call(path: str, *, key: str, json: dict, order: Order, check) -> PaymentsAnswer:
    try:
        response = service_calls.call(
            "POST", settings.PAYMENTS_URL, path, auth="service", idempotency_key=key, json=json
        )
    except service_calls.ServiceCallError as error:
        return PaymentsAnswer(Outcome.RETRYABLE, code="unreachable", reason=f"payments unreachable: {error}"[:500])
    return _sorted(response, order, check)


def charge(order: Order) -> PaymentsAnswer:
    """Ask payments to charge the order's total (idempotently: the key is the order's)."""
    return _call(
        "/api/payments/",
        key=f"order-{order.id}-charge",
        json={
            "order_id": str(order.id),
            "user_id": str(order.customer_id),
            "amount": order.total,
            "currency": order.currency,
            "payment_method": order.payment_method,
            "receipt_email": order.customer_email,
        },
        order=order,
        check=_checked_payment,
    )


def refund(order: Order) -> PaymentsAnswer:
    """Ask payments to refund everything captured for the order (idempotently: the key is the order's)."""
    return _call(
        f"/api/payments/{order.payment_id}/refund/",
        key=f"order-{order.id}-refund",
        json={"reason": "order cancelled"},
        order=order,
        check=_checked_refund,
    )
