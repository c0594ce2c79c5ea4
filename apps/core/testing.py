"""Helpers for the services' tests: API clients holding real tokens issued by the auth service.

Tests run with SERVICE=all, so auth's API is served in the test process. These helpers reach auth
as any other service would, through its HTTP API and its management commands, never by importing
it: the kernel depends on no service app.
"""

import io
import os
import uuid
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

PASSWORD = "correct horse battery staple"  # noqa: S105 (test users only)


def _post(path: str, body: dict) -> dict:
    response = APIClient().post(path, body, format="json")
    if response.status_code not in {200, 201}:
        raise AssertionError(f"POST {path}: {response.status_code} {response.content!r}")
    return response.json()


def service_client_provision(*, client_id: str, secret: str, scopes: list[str]) -> None:
    """Create or update a service client, as the deployment does (`manage.py service_client_ensure`)."""
    variable = f"TEST_CLIENT_SECRET_{uuid.uuid4().hex}"
    os.environ[variable] = secret
    try:
        args = [client_id, "--secret-env", variable]
        for scope in scopes:
            args += ["--scope", scope]
        call_command("service_client_ensure", *args, stdout=io.StringIO())
    finally:
        del os.environ[variable]


def service_client_token(*, client_id: str, scopes: list[str]) -> str:
    """A client-credentials access token of a service client provisioned with these scopes."""
    secret = uuid.uuid4().hex * 2
    service_client_provision(client_id=client_id, secret=secret, scopes=scopes)
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return _post("/api/auth/token/", body)["access_token"]


def user_token(*, email: str | None = None) -> tuple[str, str]:
    """(user id, access token) of a freshly registered user."""
    credentials = {"email": email or f"user-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD}
    user = _post("/api/auth/register/", credentials)
    return user["id"], _post("/api/auth/token/", credentials)["access_token"]


def bearer_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


class ManualClock:
    """A stand-in for `timezone.now` that moves only when a test advances it (monkeypatch it in)."""

    def __init__(self):
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
