"""Access-token verification: what passes, what is refused and why, and how keys are cached."""

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from apps.auth import keys
from apps.core.tokens import InvalidToken, KeySet, access_token_verify

pytestmark = pytest.mark.django_db


def claims(**overrides) -> dict:
    now = datetime.now(tz=UTC)
    return {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": "7b0e0d6c-3c1a-4d59-9d0c-2f1d7cc3a001",
        "kind": "user",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **overrides,
    }


def test_a_token_signed_by_auth_verifies_into_a_principal():
    principal = access_token_verify(keys.sign(claims(scope="a:b c:d")))
    assert principal.subject == "7b0e0d6c-3c1a-4d59-9d0c-2f1d7cc3a001"
    assert principal.kind == "user"
    assert principal.scopes == frozenset({"a:b", "c:d"})
    assert principal.is_service is False


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        (claims(exp=datetime.now(tz=UTC) - timedelta(minutes=1)), "The access token has expired."),
        (claims(aud="someone-else"), "The access token is not meant for this API (audience)."),
        (claims(iss="https://elsewhere.example.com"), "The access token was not issued by the auth service (issuer)."),
        (claims(kind="robot"), "The access token names an unknown kind of subject."),
    ],
)
def test_claims_that_do_not_hold_are_refused_with_the_reason(token_claims, reason):
    with pytest.raises(InvalidToken, match=re.escape(reason)):
        access_token_verify(keys.sign(token_claims))


@pytest.mark.parametrize("missing", ["sub", "jti", "exp", "iat"])
def test_a_required_claim_missing_is_refused(missing):
    token_claims = claims()
    del token_claims[missing]
    with pytest.raises(InvalidToken, match=f'Token is missing the "{missing}" claim'):
        access_token_verify(keys.sign(token_claims))


def test_hs256_signed_with_the_public_key_is_refused():
    """The classic algorithm-confusion attack: an HMAC keyed with the published RSA key."""
    public_pem = (
        keys.active_key()
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.active_key().kid}
    signing_input = f"{b64(header)}.{b64(claims())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match=re.escape("Tokens signed with 'HS256' are not accepted.")):
        access_token_verify(forged)


def b64(value: dict) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(value, default=lambda v: int(v.timestamp())).encode()).rstrip(b"=").decode()
    )


def test_a_token_without_kid_is_refused():
    token = jwt.encode(claims(), keys.active_key().private_key, algorithm="RS256")
    with pytest.raises(InvalidToken, match="names no signing key"):
        access_token_verify(token)


def test_a_token_from_an_unknown_key_is_refused():
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "not-published"})
    with pytest.raises(InvalidToken, match="signed by an unknown key"):
        access_token_verify(token)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr("apps.core.tokens.time.monotonic", fake)
    return fake


def jwks_of(*kids: str) -> dict:
    key = keys.active_key().public_jwk
    return {"keys": [{**key, "kid": kid} for kid in kids]}


def test_key_set_fetches_once_and_serves_from_cache(clock):
    loads = []
    key_set = KeySet(lambda: loads.append(1) or jwks_of("k1"), ttl=600, min_refresh_interval=5)
    assert key_set.get("k1") is not None
    clock.now += 100
    assert key_set.get("k1") is not None
    assert len(loads) == 1


def test_key_set_refetches_when_its_cache_is_older_than_the_ttl(clock):
    loads = []
    key_set = KeySet(lambda: loads.append(1) or jwks_of("k1"), ttl=600, min_refresh_interval=5)
    key_set.get("k1")
    clock.now += 601
    key_set.get("k1")
    assert len(loads) == 2


def test_key_set_refetches_for_an_unknown_kid_at_most_once_per_interval(clock):
    published = ["k1"]
    loads = []
    key_set = KeySet(lambda: loads.append(1) or jwks_of(*published), ttl=600, min_refresh_interval=5)
    key_set.get("k1")
    published.append("k2")  # auth rotated its key
    assert key_set.get("k2") is None  # within the interval: no refetch, so no flood of fetches
    clock.now += 6
    assert key_set.get("k2") is not None
    for _ in range(10):
        key_set.get("random-kid")
    assert len(loads) == 2


def test_key_set_keeps_known_keys_when_auth_is_unreachable(clock):
    responses = [jwks_of("k1")]

    def loader():
        if not responses:
            raise ConnectionError("auth down")
        return responses.pop()

    key_set = KeySet(loader, ttl=600, min_refresh_interval=5)
    key_set.get("k1")
    clock.now += 601
    assert key_set.get("k1") is not None


def test_key_set_without_any_keys_reports_that_auth_is_unreachable(clock):
    def loader():
        raise ConnectionError("auth down")

    key_set = KeySet(loader, ttl=600, min_refresh_interval=5)
    with pytest.raises(ConnectionError):
        key_set.get("k1")
