"""Money on the wire and in the database: integer minor units plus an ISO 4217 currency code."""

from rest_framework import serializers

from apps.core.serializers import StrictIntegerField

# The ISO 4217 codes this platform accepts (active currencies that cards settle in).
_CODES = """
AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KES KRW
MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON SAR SEK SGD THB TRY TWD UAH USD VND ZAR
"""
CURRENCIES = frozenset(_CODES.split())
# A ceiling far above any real order, so that sums stay exact in a 64-bit integer column.
MAX_AMOUNT = 10**12


class CurrencyField(serializers.ChoiceField):
    """An ISO 4217 code in upper case (`EUR`); anything else is a validation error naming the choices."""

    def __init__(self, **kwargs):
        super().__init__(choices=sorted(CURRENCIES), **kwargs)
        self.error_messages["invalid_choice"] = "{input} is not a supported ISO 4217 currency code (e.g. EUR, USD)."


class AmountField(StrictIntegerField):
    """An amount in minor units (cents): a positive JSON integer, never a decimal or a string of one."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_AMOUNT)
        super().__init__(**kwargs)


# ISO 4217 minor-unit exponents that are not 2 (of the codes above).
_EXPONENTS = {"CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "VND": 0}


def amount_format(amount: int, currency: str) -> str:
    """Minor units for people: amount_format(1250, "EUR") == "12.50 EUR", amount_format(500, "JPY") == "500 JPY"."""
    exponent = _EXPONENTS.get(currency, 2)
    if exponent == 0:
        return f"{amount} {currency}"
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d} {currency}"
