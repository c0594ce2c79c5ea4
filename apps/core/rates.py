"""What a rate limit is, as settings spell it: plain values, importable by the settings module.

apps.core.ratelimit enforces them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

_RATE = re.compile(r"(?P<count>[1-9][0-9]*)/(?P<amount>[1-9][0-9]*)?(?P<unit>second|minute|hour|day|s|min|h|d)")
_UNIT_SECONDS = {"second": 1, "s": 1, "minute": 60, "min": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @classmethod
    def parse(cls, text: str, *, name: str = "rate") -> Rate:
        """`30/minute`, `100/hour`, `5/15min`: requests per period."""
        match = _RATE.fullmatch(text.strip())
        if match is None:
            raise ImproperlyConfigured(f"{name}={text!r} is not a rate (use e.g. 30/minute, 100/hour, 5/15min)")
        amount = int(match["amount"] or 1)
        return cls(count=int(match["count"]), period=float(amount * _UNIT_SECONDS[match["unit"]]))


@dataclass(frozen=True)
class Backoff:
    free: int  # attempts that pass without delay
    base: float  # seconds: the first pause
    maximum: float  # seconds: the longest pause
    window: float  # seconds without an attempt after which the count starts again
