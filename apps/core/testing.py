"""Helpers for the services' tests: API clients holding real tokens issued by the auth service code.

Tests run with SERVICE=all, so the auth app is installed and tokens are signed and verified for real.
"""

import uuid

from rest_framework.test import APIClient

PASSWORD = "correct horse battery staple"  # noqa: S105 (test users only)


def service_client_token(*, client_id: str, scopes: list[str]) -> str:
    from apps.auth.services import client_token_issue, service_client_ensure  # noqa: PLC0415

    secret = uuid.uuid4().hex * 2
    service_client_ensure(client_id=client_id, secret=secret, scopes=scopes)
    return client_token_issue(client_id=client_id, client_secret=secret).access_token


def user_token(*, email: str | None = None) -> tuple[str, str]:
    """(user id, access token) of a freshly registered user."""
    from apps.auth.services import user_login, user_register  # noqa: PLC0415

    user = user_register(email=email or f"user-{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD)
    return str(user.id), user_login(email=user.email, password=PASSWORD, remote_addr="127.0.0.1").access_token


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
