import pytest

from apps.core.money import amount_format


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(1250, "EUR", "12.50 EUR"), (5, "USD", "0.05 USD"), (500, "JPY", "500 JPY"), (-199, "GBP", "-1.99 GBP")],
)
def test_amount_format(amount, currency, text):
    assert amount_format(amount, currency) == text
