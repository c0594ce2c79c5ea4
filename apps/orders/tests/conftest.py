"""The orders service talks to payments (and auth) over real HTTP: pytest-django's live server runs
every service of this test process, and orders authenticates with a real client-credentials token."""

import uuid

import pytest

from apps.core import service_calls
from apps.core.testing import PASSWORD, bearer_client, service_client_provision, user_token


@pytest.fixture
def live_platform(live_server, settings):
    secret = "orders-test-secret-0123456789abcdef"
    service_client_provision(
        client_id="orders", secret=secret, scopes=["payments:charge", "payments:refund", "notifications:publish"]
    )
    settings.SERVICE_CLIENT_ID = "orders"
    settings.SERVICE_CLIENT_SECRET = secret
    settings.AUTH_URL = settings.PAYMENTS_URL = settings.NOTIFICATIONS_URL = live_server.url
    settings.SERVICE_CALL_RETRIES = 0  # an unreachable service fails at once
    service_calls.service_token.forget()
    yield live_server
    service_calls.service_token.forget()
    # Close kept-alive connections now, while the live server's threads still share the database.
    service_calls.sessions_close()


@pytest.fixture
def customer(db):
    """(user id, API client with their token, their email)."""
    email = f"customer-{uuid.uuid4().hex[:8]}@example.com"
    user_id, token = user_token(email=email)
    return user_id, bearer_client(token), email


@pytest.fixture
def password():
    return PASSWORD
