"""The customer journey against any running deployment of the platform, given where its services are.

The same journey runs through the compose stack's published ports (tests/containers) and through a
cluster's stable Services (tests/cluster): register and log in, a paid and a declined order, and both
notifications in the inbox, delivered by the outbox relays.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from tests.client import register_and_login

LINES = [{"sku": "BOOK-42", "quantity": 2, "unit_price": 1250}, {"sku": "PEN-1", "quantity": 1, "unit_price": 300}]
TOTAL = 2800


@dataclass(frozen=True)
class JourneyResult:
    email: str
    paid_order: dict
    declined_order: dict
    inbox_types_by_order: dict[str, str]


def order_place(orders_url: str, token: str, payment_method: str, *, http=requests) -> dict:
    response = http.post(
        f"{orders_url}/api/orders/",
        json={"currency": "EUR", "lines": LINES, "payment_method": payment_method},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def journey_run(urls: Mapping[str, str], *, http=requests, delivery_timeout: float = 60.0) -> JourneyResult:
    """Walk the journey through `urls` (service name -> base URL) and assert each step's answer;
    `http` is the requests module or a Session that adds what the deployment needs."""
    email, tokens = register_and_login(urls["auth"], http=http)
    token = tokens["access_token"]
    paid = order_place(urls["orders"], token, "pm_card_visa", http=http)
    declined = order_place(urls["orders"], token, "pm_card_declined", http=http)
    assert (paid["status"], paid["total"], paid["currency"]) == ("paid", TOTAL, "EUR")
    assert (declined["status"], declined["decline_code"]) == ("payment_failed", "card_declined")

    wanted = {paid["id"], declined["id"]}
    deadline = time.monotonic() + delivery_timeout
    while True:
        inbox = http.get(
            f"{urls['notifications']}/api/notifications/",
            headers={"Authorization": f"Bearer {token}"},
            params={"page_size": 100},
            timeout=10,
        )
        assert inbox.status_code == 200, inbox.text
        by_order = {item["data"].get("order_id"): item["type"] for item in inbox.json()["results"]}
        if wanted <= set(by_order):
            break
        assert time.monotonic() < deadline, f"not in the inbox within {delivery_timeout} s: {wanted - set(by_order)}"
        time.sleep(0.5)
    return JourneyResult(email=email, paid_order=paid, declined_order=declined, inbox_types_by_order=by_order)
