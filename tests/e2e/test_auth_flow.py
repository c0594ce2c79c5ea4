"""The auth flows over real HTTP between real gunicorn processes, as a client would use them."""

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.client import PASSWORD, assert_problem, register_and_login, requests_counted

pytestmark = pytest.mark.e2e


def signed(stack, claims: dict, *, headers: dict | None = None, key=None) -> str:
    """A token signed with auth's real private key (or `key`), with the claims a test wants."""
    auth = stack["auth"]
    private_key = key or serialization.load_pem_private_key(
        Path(auth.env["AUTH_SIGNING_KEY_FILE"]).read_bytes(), password=None
    )
    kid = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=5).json()["keys"][0]["kid"]
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid, **(headers or {})})


def valid_claims(stack, **overrides) -> dict:
    now = datetime.now(tz=UTC)
    return {
        "iss": stack["auth"].env["JWT_ISSUER"],
        "aud": "platform-api",
        "sub": str(uuid.uuid4()),
        "kind": "user",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **overrides,
    }


def test_register_login_and_me(stack):
    email, tokens = register_and_login(stack["auth"].url)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    me = requests.get(
        f"{stack['auth'].url}/api/auth/me/", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5
    )
    assert me.status_code == 200
    assert me.json()["email"] == email


def test_access_token_is_rs256_with_kid_and_the_standard_claims(stack):
    _, tokens = register_and_login(stack["auth"].url)
    header = jwt.get_unverified_header(tokens["access_token"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert header["alg"] == "RS256"
    jwks_kids = [
        key["kid"] for key in requests.get(f"{stack['auth'].url}/.well-known/jwks.json", timeout=5).json()["keys"]
    ]
    assert header["kid"] in jwks_kids
    assert {"iss", "aud", "exp", "iat", "sub", "jti"} <= set(claims)
    assert claims["aud"] == "platform-api"
    assert claims["exp"] - claims["iat"] == 300


def test_duplicate_email_is_409(stack):
    email, _ = register_and_login(stack["auth"].url)
    again = requests.post(
        f"{stack['auth'].url}/api/auth/register/", json={"email": email.upper(), "password": PASSWORD}, timeout=10
    )
    assert_problem(again, 409, "conflict")


def test_a_refresh_token_used_twice_revokes_its_family(stack):
    url = stack["auth"].url
    _, first = register_and_login(url)
    second = requests.post(f"{url}/api/auth/token/refresh/", json={"refresh_token": first["refresh_token"]}, timeout=5)
    assert second.status_code == 200
    replay = requests.post(f"{url}/api/auth/token/refresh/", json={"refresh_token": first["refresh_token"]}, timeout=5)
    assert_problem(replay, 401, "invalid_refresh_token")
    # The legitimate successor was revoked with the family: the thief and the user must both log in again.
    successor = requests.post(
        f"{url}/api/auth/token/refresh/", json={"refresh_token": second.json()["refresh_token"]}, timeout=5
    )
    assert_problem(successor, 401, "invalid_refresh_token")


def test_logout_revokes_the_refresh_token(stack):
    url = stack["auth"].url
    _, tokens = register_and_login(url)
    logout = requests.post(f"{url}/api/auth/logout/", json={"refresh_token": tokens["refresh_token"]}, timeout=5)
    assert logout.status_code == 204
    refresh = requests.post(
        f"{url}/api/auth/token/refresh/", json={"refresh_token": tokens["refresh_token"]}, timeout=5
    )
    assert_problem(refresh, 401, "invalid_refresh_token")


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, default=str).encode()).rstrip(b"=").decode()


def forge_expired(stack) -> str:
    return signed(stack, valid_claims(stack, exp=datetime.now(tz=UTC) - timedelta(minutes=5)))


def forge_tampered_signature(stack) -> str:
    header, payload, signature = signed(stack, valid_claims(stack)).split(".")
    return f"{header}.{payload}.{signature[:-6]}AAAAAA"


def forge_tampered_claims(stack) -> str:
    header, payload, signature = signed(stack, valid_claims(stack)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_b64({**claims, 'sub': str(uuid.uuid4())})}.{signature}"


def forge_alg_none(stack) -> str:
    claims = {**valid_claims(stack), "iat": int(time.time()), "exp": int(time.time()) + 300}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def forge_wrong_audience(stack) -> str:
    return signed(stack, valid_claims(stack, aud="another-api"))


def forge_wrong_issuer(stack) -> str:
    return signed(stack, valid_claims(stack, iss="https://evil.example.com"))


def forge_unknown_kid(stack) -> str:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return signed(stack, valid_claims(stack), headers={"kid": "unknown-kid"}, key=other_key)


def forge_garbage(stack) -> str:
    return "not-a-jwt"


FORGERIES = [
    forge_expired,
    forge_tampered_signature,
    forge_tampered_claims,
    forge_alg_none,
    forge_wrong_audience,
    forge_wrong_issuer,
    forge_unknown_kid,
    forge_garbage,
]

# One endpoint per service that requires a user's access token.
PROTECTED = {
    "auth": "/api/auth/me/",
    "orders": "/api/orders/",
    "payments": "/api/payments/00000000-0000-4000-8000-000000000000/",
    "notifications": "/api/notifications/",
}


@pytest.mark.parametrize("service", sorted(PROTECTED))
@pytest.mark.parametrize("forge", FORGERIES, ids=lambda forge: forge.__name__.removeprefix("forge_"))
def test_bad_tokens_are_401_problems(stack, service, forge):
    response = requests.get(
        f"{stack[service].url}{PROTECTED[service]}", headers={"Authorization": f"Bearer {forge(stack)}"}, timeout=5
    )
    assert_problem(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("service", sorted(PROTECTED))
def test_no_token_is_401(stack, service):
    response = requests.get(f"{stack[service].url}{PROTECTED[service]}", timeout=5)
    assert_problem(response, 401, "not_authenticated")


def test_other_services_verify_tokens_without_calling_auth_per_request(stack):
    _, tokens = register_and_login(stack["auth"].url)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{stack['orders'].url}/api/orders/", headers=headers, timeout=5).status_code == 200
    before = requests_counted(stack["auth"].url, "jwks")
    for _ in range(20):
        response = requests.get(
            f"{stack['orders'].url}/api/orders/", headers={**headers, "Connection": "close"}, timeout=5
        )
        assert response.status_code == 200
    after = requests_counted(stack["auth"].url, "jwks")
    # Each orders worker fetches the keys once and caches them: at most one fetch, by a worker that
    # had not served a request yet, in twenty requests.
    assert after - before <= 1
