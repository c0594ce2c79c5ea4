"""A simulated card processor: the outcome follows from the payment method alone, with no network.

Stripe's test payment methods name the behaviour they trigger; these do the same:
pm_card_visa, pm_card_mastercard and pm_card_amex succeed; pm_card_declined (card_declined),
pm_card_insufficient_funds, pm_card_expired (expired_card) and pm_card_lost (lost_card) are declined;
any other method is declined as invalid_payment_method, as a processor refuses a method it does not know.
"""

from dataclasses import dataclass

SUCCEEDING = frozenset({"pm_card_visa", "pm_card_mastercard", "pm_card_amex"})
DECLINES = {
    "pm_card_declined": "card_declined",
    "pm_card_insufficient_funds": "insufficient_funds",
    "pm_card_expired": "expired_card",
    "pm_card_lost": "lost_card",
}


@dataclass(frozen=True)
class ProviderDecision:
    succeeded: bool
    decline_code: str = ""


def charge_decide(*, payment_method: str, amount: int, currency: str) -> ProviderDecision:
    if payment_method in SUCCEEDING:
        return ProviderDecision(succeeded=True)
    return ProviderDecision(succeeded=False, decline_code=DECLINES.get(payment_method, "invalid_payment_method"))
