import pytest

from apps.payments.provider import ProviderDecision, charge_decide


@pytest.mark.parametrize("method", ["pm_card_visa", "pm_card_mastercard", "pm_card_amex"])
def test_succeeding_methods(method):
    assert charge_decide(payment_method=method, amount=1250, currency="EUR") == ProviderDecision(succeeded=True)


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pm_card_declined", "card_declined"),
        ("pm_card_insufficient_funds", "insufficient_funds"),
        ("pm_card_expired", "expired_card"),
        ("pm_card_lost", "lost_card"),
        ("pm_card_unknown", "invalid_payment_method"),
    ],
)
def test_declining_methods(method, code):
    assert charge_decide(payment_method=method, amount=1250, currency="EUR") == ProviderDecision(
        succeeded=False, decline_code=code
    )
