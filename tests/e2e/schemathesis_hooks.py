"""Schemathesis hooks for tests/e2e/test_api_contract.py: which token each operation is called with.

Users place orders and read their inbox; services (the orders service's client, which holds every
payments scope and notifications:publish) charge, refund, read payments and publish events. The
tokens come from the environment the test gives `st run`.
"""

import os
import re
import uuid

import schemathesis

SERVICE_PATHS = ("/api/payments/", "/api/notifications/events/")


@schemathesis.auth(refresh_interval=None)  # chosen per operation: nothing to cache across them
class PlatformTokens:
    def get(self, case, context):
        if context.operation.path.startswith(SERVICE_PATHS):
            return os.environ["SCHEMATHESIS_SERVICE_TOKEN"]
        return os.environ["SCHEMATHESIS_USER_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook("map_headers")
def idempotency_keys_apart(context, headers):
    """A valid Idempotency-Key made unique per case: hypothesis draws short keys again and again, and
    the same key for another body is (rightly) a 422, which would keep most orders from ever being
    placed. Keys the schema forbids are left as drawn, for the API to refuse."""
    key = (headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and _KEY.fullmatch(key):
        headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    return headers


ORDER_TOTAL_MAX = 10**12  # apps.core.money.MAX_AMOUNT: what an order's total may reach


@schemathesis.hook("map_body")
def order_totals_in_range(context, body):
    """An order whose lines are each valid can still total 0 or more than the maximum, which the
    document cannot say (a sum over items) and the API refuses. Such bodies get unit prices that
    total within range, still valid line by line, so that orders get placed and the stateful phase
    has orders to read and cancel. Bodies invalid in themselves are left as drawn."""
    if context.operation.path != "/api/orders/" or not isinstance(body, dict):
        return body
    lines = body.get("lines")
    if not isinstance(lines, list) or not lines or not all(_countable(line) for line in lines):
        return body
    total = sum(line["quantity"] * line["unit_price"] for line in lines)
    if 1 <= total <= ORDER_TOTAL_MAX:
        return body
    for line in lines:
        line["unit_price"] = 1 + line["unit_price"] % 10_000
    return body


def _countable(line) -> bool:
    return isinstance(line, dict) and all(
        isinstance(line.get(name), int) and not isinstance(line.get(name), bool) for name in ("quantity", "unit_price")
    )
