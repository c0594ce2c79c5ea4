"""The auth service's HTTP API in-process: status codes, bodies, headers, and bad input."""

from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from apps.auth.models import User

pytestmark = pytest.mark.django_db


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


def test_register_answers_201_with_the_user(api_client, password):
    response = api_client.post(
        "/api/auth/register/", {"email": "Grace@Example.com", "password": password}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["email"] == "grace@example.com"
    assert set(response.json()) == {"id", "email", "created_at"}


def test_register_duplicate_is_409(api_client, user, password):
    response = api_client.post("/api/auth/register/", {"email": user.email, "password": password}, format="json")
    assert problem(response, 409)["detail"] == "A user with this email already exists."


def test_register_weak_password_is_400_with_the_reasons(api_client):
    response = api_client.post("/api/auth/register/", {"email": "g@example.com", "password": "12345678"}, format="json")
    body = problem(response, 400)
    assert "This password is entirely numeric." in body["errors"]["password"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "correct horse battery"},
        {"email": "g@example.com"},
        {"email": ["g@example.com"], "password": "correct horse battery"},
        {"email": "g@example.com", "password": 12345678901},
        {"email": "g@example.com", "password": "correct horse battery", "is_staff": True},
        {"email": "g@example.com", "password": "x" * 129},
    ],
    ids=["bad-email", "missing-password", "email-as-list", "password-as-number", "unknown-field", "password-too-long"],
)
def test_register_bad_input_is_a_validation_problem(api_client, body):
    assert problem(api_client.post("/api/auth/register/", body, format="json"), 400)["code"] == "validation_error"
    assert not User.objects.exists()


def test_token_answer_is_not_cacheable(api_client, user, password):
    response = api_client.post("/api/auth/token/", {"email": user.email, "password": password}, format="json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert set(response.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}


def test_token_wrong_password_is_401(api_client, user):
    response = api_client.post("/api/auth/token/", {"email": user.email, "password": "wrong one!"}, format="json")
    assert problem(response, 401)["code"] == "invalid_credentials"


def test_token_throttled_is_429_with_retry_after(api_client, user, settings):
    settings.LOGIN_FREE_ATTEMPTS_PER_ADDRESS = 2
    settings.LOGIN_DELAY_BASE_SECONDS = 30
    for _ in range(2):
        api_client.post("/api/auth/token/", {"email": user.email, "password": "wrong one!"}, format="json")
    response = api_client.post("/api/auth/token/", {"email": user.email, "password": "wrong one!"}, format="json")
    body = problem(response, 429)
    assert body["code"] == "throttled"
    assert 29 <= body["retry_after"] <= 30
    assert int(response["Retry-After"]) == body["retry_after"]


def test_token_refusals_carry_a_challenge(api_client, user):
    response = api_client.post("/api/auth/token/", {"email": user.email, "password": "wrong one!"}, format="json")
    assert problem(response, 401)["code"] == "invalid_credentials"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_client_address_is_taken_from_a_trusted_proxy_only(api_client, user, settings):
    """Behind the gateway, limits count the client's address, and a client cannot pick its own."""
    import ipaddress

    from apps.core.rates import Rate

    settings.RATE_LIMIT_LOGIN_PER_ADDRESS = Rate(count=1, period=3600)
    body = {"email": user.email, "password": "wrong one!"}
    forged = {"HTTP_X_FORWARDED_FOR": "198.51.100.1"}
    assert api_client.post("/api/auth/token/", body, format="json", **forged).status_code == 401
    # Not from a trusted proxy: the header is ignored, 127.0.0.1 is the client, its bucket is spent.
    assert (
        api_client.post("/api/auth/token/", body, format="json", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 429
    )
    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    # From a trusted proxy: each client address has a bucket of its own.
    for client in ("203.0.113.1", "203.0.113.2"):
        via_proxy = {"HTTP_X_FORWARDED_FOR": f"{client}, 127.0.0.9"}
        assert api_client.post("/api/auth/token/", body, format="json", **via_proxy).status_code == 401


def test_client_credentials_accept_a_form_encoded_body(api_client, db):
    from apps.auth.services import service_client_ensure

    service_client_ensure(client_id="orders", secret="s" * 32, scopes=["payments:charge"])
    response = api_client.post(
        "/api/auth/token/",
        urlencode({"grant_type": "client_credentials", "client_id": "orders", "client_secret": "s" * 32}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "refresh_token" not in response.json()


def test_unknown_grant_type_is_a_validation_problem(api_client, db):
    response = api_client.post(
        "/api/auth/token/", {"grant_type": "implicit", "email": "a@b.c", "password": "x"}, format="json"
    )
    assert problem(response, 400)["errors"]["grant_type"] == ['"implicit" is not a valid choice.']


def test_refresh_rotates(api_client, user_tokens):
    response = api_client.post("/api/auth/token/refresh/", {"refresh_token": user_tokens.refresh_token}, format="json")
    assert response.status_code == 200
    assert response.json()["refresh_token"] != user_tokens.refresh_token


def test_me_answers_the_caller(user_client, user):
    assert user_client.get("/api/auth/me/").json()["id"] == str(user.id)


def test_me_refuses_a_service_token(api_client, db):
    from apps.auth.services import client_token_issue, service_client_ensure

    service_client_ensure(client_id="orders", secret="s" * 32, scopes=[])
    api_client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {client_token_issue(client_id='orders', client_secret='s' * 32).access_token}"
    )
    assert problem(api_client.get("/api/auth/me/"), 403)["code"] == "permission_denied"


def test_me_of_a_deactivated_user_is_404(user_client, user):
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert problem(user_client.get("/api/auth/me/"), 404)["code"] == "not_found"


def test_basic_auth_scheme_is_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert problem(client.get("/api/auth/me/"), 401)["code"] == "invalid_token"


def test_jwks_publishes_the_active_public_key_only(api_client, db):
    keys = api_client.get("/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["alg"] == "RS256"
    assert keys[0]["use"] == "sig"
    assert "d" not in keys[0]  # no private component


def test_schema_documents_every_auth_endpoint(api_client, db):
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert {
        "/api/auth/register/",
        "/api/auth/token/",
        "/api/auth/token/refresh/",
        "/api/auth/logout/",
        "/api/auth/me/",
        "/.well-known/jwks.json",
    } <= set(paths)


def test_swagger_ui_is_served(api_client, db):
    response = api_client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
