"""A simulated card processor: the outcome follows from the payment method alone, with no network.

Stripe's test payment methods name the behaviour they trigger; these do the same:
pm_card_visa, pm_card_mastercard and pm_card_amex succeed; pm_card_declined (card_declined),
pm_card_insufficient_funds, pm_card_expired (expired_card) and pm_card_lost (lost_card) are declined;
any other method is declined as invalid_payment_method, as a processor refuses a method it does not know.

It is called the way a real processor must be: with no database transaction open, under an
idempotency key of its own (the same key always gets the same decision, so a charge redone after a
crash is the same charge), and within `CALL_BUDGET_SECONDS`. For drills, while the file named by
PAYMENTS_PROVIDER_FAULT_FILE exists every call raises, as a processor's client does on an outage.
"""

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SUCCEEDING = frozenset({"pm_card_visa", "pm_card_mastercard", "pm_card_amex"})
DECLINES = {
    "pm_card_declined": "card_declined",
    "pm_card_insufficient_funds": "insufficient_funds",
    "pm_card_expired": "expired_card",
    "pm_card_lost": "lost_card",
}
# The longest one call may take (a real processor's client timeout); payments' key lease exceeds it.
CALL_BUDGET_SECONDS = 10.0


class ProviderError(Exception):
    """The processor could not be asked (a network failure, an outage): nothing was decided."""


@dataclass(frozen=True)
class ProviderDecision:
    succeeded: bool
    decline_code: str = ""


def charge_decide(*, payment_method: str, amount: int, currency: str, idempotency_key: str = "") -> ProviderDecision:
    fault_file = settings.PAYMENTS_PROVIDER_FAULT_FILE
    if fault_file and Path(fault_file).exists():
        raise ProviderError(f"simulated processor outage ({fault_file} exists)")
    if payment_method in SUCCEEDING:
        return ProviderDecision(succeeded=True)
    return ProviderDecision(succeeded=False, decline_code=DECLINES.get(payment_method, "invalid_payment_method"))
