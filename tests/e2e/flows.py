"""Helpers for the business-flow tests: a customer talking to the running stack over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from tests.client import register_and_login
from tests.live import Stack

VISA = "pm_card_visa"
DECLINED = "pm_card_declined"
LINES = [{"sku": "BOOK-42", "quantity": 2, "unit_price": 1250}, {"sku": "PEN-1", "quantity": 1, "unit_price": 300}]
TOTAL = 2800


@dataclass
class Customer:
    stack: Stack
    email: str
    token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def user_id(self) -> str:
        import jwt

        return jwt.decode(self.token, options={"verify_signature": False})["sub"]

    def place(self, payment_method: str = VISA, *, key: str | None = None, lines=LINES) -> requests.Response:
        return requests.post(
            f"{self.stack['orders'].url}/api/orders/",
            json={"currency": "EUR", "lines": lines, "payment_method": payment_method},
            headers={**self.headers, "Idempotency-Key": key or str(uuid.uuid4())},
            timeout=30,
        )

    def get(self, service: str, path: str, **params) -> requests.Response:
        return requests.get(f"{self.stack[service].url}{path}", headers=self.headers, params=params, timeout=10)

    def post(self, service: str, path: str, **kwargs) -> requests.Response:
        return requests.post(f"{self.stack[service].url}{path}", headers=self.headers, timeout=30, **kwargs)

    def inbox(self) -> list[dict]:
        response = self.get("notifications", "/api/notifications/", page_size=100)
        assert response.status_code == 200, response.text
        return response.json()["results"]


def customer(stack: Stack) -> Customer:
    email, tokens = register_and_login(stack["auth"].url)
    return Customer(stack=stack, email=email, token=tokens["access_token"])


def wait_for(condition: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.1, message: str = ""):
    """Poll until `condition()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message}")
        time.sleep(interval)


def as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def payments_of_order(stack: Stack, order_id: str) -> list[tuple]:
    """(id, status, amount) of every payment row for an order, read from payments' own database."""
    rows = stack["payments"].sql("SELECT id, order_id, status, amount FROM payments_payment")
    return [(str(as_uuid(row[0])), row[2], row[3]) for row in rows if as_uuid(row[1]) == as_uuid(order_id)]


def order_events(stack: Stack, order_ids: list[str]) -> dict[uuid.UUID, tuple]:
    """Outbox rows of these orders: event id -> (type, attempts, delivered)."""
    wanted = {as_uuid(order_id) for order_id in order_ids}
    rows = stack["orders"].sql("SELECT id, aggregate_id, type, attempts, delivered_at FROM orders_orderevent")
    return {as_uuid(row[0]): (row[2], row[3], row[4] is not None) for row in rows if as_uuid(row[1]) in wanted}


def times_received(stack: Stack, event_ids) -> dict[uuid.UUID, int]:
    """How often notifications received each of these events (1 means exactly once)."""
    wanted = {as_uuid(event_id) for event_id in event_ids}
    rows = stack["notifications"].sql("SELECT event_id, times_received FROM notifications_processedevent")
    return {as_uuid(row[0]): row[1] for row in rows if as_uuid(row[0]) in wanted}


def service_token(stack: Stack, client_id: str) -> str:
    """A client-credentials token of one of the stack's service clients (its secret is in its env)."""
    service = stack[client_id]
    response = requests.post(
        f"{stack['auth'].url}/api/auth/token/",
        json={
            "grant_type": "client_credentials",
            "client_id": service.env["SERVICE_CLIENT_ID"],
            "client_secret": service.env["SERVICE_CLIENT_SECRET"],
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
