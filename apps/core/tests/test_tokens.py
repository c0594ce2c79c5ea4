"""Access-token verification: what passes, what is refused and why, and how keys are cached.

Tokens here are signed with a key of the test's own, lent to the kernel as a local key loader: the
kernel is tested without the auth app.
"""

import base64
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from apps.core import tokens
from apps.core.models import KeySetSnapshot
from apps.core.tokens import InvalidToken, KeySet, KeySetSnapshotStore, KeysUnavailable, access_token_verify

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWK = {
    **jwt.algorithms.RSAAlgorithm.to_jwk(PRIVATE_KEY.public_key(), as_dict=True),
    "use": "sig",
    "alg": "RS256",
}
KID = "test-key"
USER_ID = "7b0e0d6c-3c1a-4d59-9d0c-2f1d7cc3a001"


def jwks_of(*kids: str) -> dict:
    return {"keys": [{**PUBLIC_JWK, "kid": kid} for kid in kids]}


@pytest.fixture
def sign():
    """Sign claims with the test key, which the kernel verifies against as its local key set."""
    previous = tokens.local_key_loader_register(lambda: jwks_of(KID))
    yield lambda token_claims, **headers: jwt.encode(
        token_claims, PRIVATE_KEY, algorithm="RS256", headers={"kid": KID, **headers}
    )
    tokens.local_key_loader_register(previous)


def claims(**overrides) -> dict:
    now = datetime.now(tz=UTC)
    return {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": USER_ID,
        "kind": "user",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        **overrides,
    }


def test_a_valid_token_verifies_into_a_principal(sign):
    principal = access_token_verify(sign(claims(scope="a:b c:d", email="ada@example.com")))
    assert principal.subject == USER_ID
    assert principal.kind == "user"
    assert principal.scopes == frozenset({"a:b", "c:d"})
    assert principal.email == "ada@example.com"
    assert principal.is_service is False


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        (claims(exp=datetime.now(tz=UTC) - timedelta(minutes=1)), "The access token has expired."),
        (claims(nbf=datetime.now(tz=UTC) + timedelta(minutes=5)), "The access token is not valid yet."),
        (claims(iat=datetime.now(tz=UTC) + timedelta(minutes=5)), "The access token is not valid yet."),
        (claims(aud="someone-else"), "The access token is not meant for this API (audience)."),
        (claims(aud=[settings.JWT_AUDIENCE, "b"]), "The access token is not meant for this API (audience)."),
        (claims(iss="https://elsewhere.example.com"), "The access token was not issued by the auth service (issuer)."),
        (claims(kind="robot"), "The access token names an unknown kind of subject."),
    ],
    ids=["expired", "not-before-ahead", "issued-in-the-future", "audience", "audience-list", "issuer", "kind"],
)
def test_claims_that_do_not_hold_are_refused_with_the_reason(sign, token_claims, reason):
    with pytest.raises(InvalidToken, match=re.escape(reason)):
        access_token_verify(sign(token_claims))


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_a_date_claim_that_is_a_string_is_refused(sign, name):
    """PyJWT itself would read `"exp": "9999999999"` as a date far in the future."""
    as_string = str(int((datetime.now(tz=UTC) + timedelta(minutes=1)).timestamp()))
    token_claims = {**claims(), name: as_string}
    if name == "exp":
        token_claims["exp"] = "9999999999"
    with pytest.raises(InvalidToken, match=re.escape(f"The access token's '{name}' claim is not a number.")):
        access_token_verify(sign(token_claims))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": True}, "'exp' claim is not a number"),
        ({"sub": 7}, "'sub' claim is not a string"),
        ({"sub": ""}, "'sub' claim is not a string"),
        ({"sub": "admin"}, "subject is not a user id"),
        ({"jti": ["x"]}, "'jti' claim is not a string"),
        ({"scope": ["payments:charge"]}, "'scope' claim is not a string"),
        ({"email": {"a": 1}}, "'email' claim is not a string"),
    ],
    ids=["exp-bool", "sub-number", "sub-empty", "sub-not-uuid", "jti-list", "scope-list", "email-object"],
)
def test_claims_of_the_wrong_type_are_refused(sign, overrides, reason):
    with pytest.raises(InvalidToken, match=re.escape(reason)):
        access_token_verify(sign({**claims(), **overrides}))


@pytest.mark.parametrize("missing", ["sub", "jti", "exp", "iat"])
def test_a_required_claim_missing_is_refused(sign, missing):
    token_claims = claims()
    del token_claims[missing]
    with pytest.raises(InvalidToken, match=f'Token is missing the "{missing}" claim'):
        access_token_verify(sign(token_claims))


def test_a_token_verified_once_is_not_decoded_again(sign, monkeypatch):
    token = sign(claims(email="ada@example.com"))
    first = access_token_verify(token)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(tokens.jwt, "decode", no_decoding)
    monkeypatch.setattr(tokens.jwt, "get_unverified_header", no_decoding)
    assert access_token_verify(token) == first


def test_a_kept_token_expires_when_verification_would_refuse_it(sign, monkeypatch, settings):
    settings.JWT_LEEWAY_SECONDS = 10
    expires = datetime.now(tz=UTC) + timedelta(minutes=1)
    token = sign(claims(exp=expires))
    access_token_verify(token)

    monkeypatch.setattr(tokens, "_now", lambda: int(expires.timestamp()) + 9.5)  # within the leeway
    assert access_token_verify(token).subject == USER_ID
    monkeypatch.setattr(tokens, "_now", lambda: int(expires.timestamp()) + 10.0)
    with pytest.raises(InvalidToken, match=re.escape("The access token has expired.")):
        access_token_verify(token)
    assert tokens.verified_tokens.get(token) is None


def test_a_kept_token_verifies_afresh_once_its_key_is_withdrawn(sign):
    token = sign(claims())
    access_token_verify(token)

    tokens.local_key_loader_register(lambda: jwks_of("another-key"))  # a JWKS without the signing key
    with pytest.raises(InvalidToken, match=re.escape("The access token was signed by an unknown key.")):
        access_token_verify(token)


def test_only_tokens_that_passed_are_kept(sign):
    token = sign(claims(aud="someone-else"))
    with pytest.raises(InvalidToken):
        access_token_verify(token)
    assert tokens.verified_tokens.get(token) is None


def test_the_kept_tokens_are_bounded_the_oldest_dropped_first(sign, monkeypatch):
    monkeypatch.setattr(tokens, "verified_tokens", tokens.VerifiedTokens(size=2))
    first, second, third = (sign(claims()) for _ in range(3))
    for token in (first, second, third):
        access_token_verify(token)
    assert [tokens.verified_tokens.get(token) is not None for token in (first, second, third)] == [False, True, True]


def b64(value: dict) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(value, default=lambda v: int(v.timestamp())).encode()).rstrip(b"=").decode()
    )


def test_hs256_signed_with_the_public_key_is_refused(sign):
    """The classic algorithm-confusion attack: an HMAC keyed with the published RSA key."""
    public_pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{b64(claims())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match=re.escape("Tokens signed with 'HS256' are not accepted.")):
        access_token_verify(forged)


def test_a_token_without_kid_is_refused(sign):
    with pytest.raises(InvalidToken, match="names no signing key"):
        access_token_verify(jwt.encode(claims(), PRIVATE_KEY, algorithm="RS256"))


def test_a_token_from_an_unknown_key_is_refused(sign):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "not-published"})
    with pytest.raises(InvalidToken, match="signed by an unknown key"):
        access_token_verify(token)


# --- the key cache ---------------------------------------------------------------------------------


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


class Auth:
    """A loader standing for auth's JWKS endpoint: answers, fails, or hangs until released."""

    def __init__(self, *kids: str):
        self.kids = list(kids)
        self.calls = 0
        self.down = False
        self.hang = threading.Event()
        self.hang.set()  # not hanging
        self.returned = threading.Event()

    def __call__(self) -> dict:
        self.calls += 1
        try:
            self.hang.wait(10)
            if self.down:
                raise ConnectionError("auth down")
            return jwks_of(*self.kids)
        finally:
            self.returned.set()

    def hung(self):
        self.hang.clear()


def key_set(auth, **overrides) -> KeySet:
    options = {"ttl": 600, "min_refresh_interval": 5, "max_backoff": 60, "wait": 2, "background": False}
    return KeySet(auth, **{**options, **overrides})


def test_a_known_kid_is_served_from_the_cache_without_fetching_again(clock):
    auth = Auth("k1")
    keys = key_set(auth)
    assert keys.get("k1") is not None
    clock.now += 599
    assert keys.get("k1") is not None
    assert auth.calls == 1


def test_an_expired_cache_is_refreshed_once(clock):
    auth = Auth("k1")
    keys = key_set(auth)
    keys.get("k1")
    clock.now += 601
    keys.get("k1")
    keys.get("k1")
    assert auth.calls == 2


def test_an_unknown_kid_refetches_at_most_once_per_interval(clock):
    auth = Auth("k1")
    keys = key_set(auth)
    keys.get("k1")
    auth.kids.append("k2")  # auth rotated its key
    assert keys.get("k2") is None  # within the interval: no refetch
    clock.now += 5.1
    assert keys.get("k2") is not None
    for _ in range(50):
        assert keys.get(f"random-{uuid.uuid4().hex}") is None
    assert auth.calls == 2


def test_while_auth_is_down_known_keys_keep_verifying_and_fetches_back_off(clock):
    auth = Auth("k1")
    keys = key_set(auth, ttl=10, min_refresh_interval=1, max_backoff=8)
    keys.get("k1")
    auth.down = True
    attempts_at = []
    for _ in range(600):  # one request every 0.1 s for a minute, the cache long expired
        clock.now += 0.1
        before = auth.calls
        assert keys.get("k1") is not None
        if auth.calls > before:
            attempts_at.append(round(clock.now - 1000, 1))
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(attempts_at)]
    # Doubling from the interval (with up to 20% jitter), then capped: 1, 2, 4, 8, 8, ...
    for gap, floor in zip(gaps, [1, 2, 4, 8, 8, 8, 8], strict=False):
        assert floor <= gap <= floor * 1.2 + 0.1
    assert 6 <= len(attempts_at) <= 9  # instead of 500 attempts, one per request


def test_unknown_kids_while_auth_is_down_cost_one_fetch_per_backoff(clock):
    auth = Auth("k1")
    keys = key_set(auth, min_refresh_interval=5, max_backoff=60)
    keys.get("k1")
    auth.down = True
    clock.now += 6
    for _ in range(1000):
        assert keys.get(f"random-{uuid.uuid4().hex}") is None
    assert auth.calls == 2
    clock.now += 6.1  # after the first failure the next fetch waits the interval, plus up to 20% jitter
    for _ in range(1000):
        keys.get(f"random-{uuid.uuid4().hex}")
    assert auth.calls == 3


def test_a_success_after_an_outage_resets_the_backoff(clock):
    auth = Auth("k1")
    keys = key_set(auth, ttl=10, min_refresh_interval=1, max_backoff=30)
    keys.get("k1")
    auth.down = True
    for _ in range(5):
        clock.now += 31
        keys.get("k1")
    auth.down = False
    clock.now += 31
    keys.get("k1")
    calls = auth.calls
    clock.now += 11  # expired again: fetched at once, not after a 30 s backoff
    keys.get("k1")
    assert auth.calls == calls + 1


def test_a_process_without_keys_and_auth_down_is_unavailable_with_when_to_retry(clock):
    auth = Auth()
    auth.down = True
    keys = key_set(auth, min_refresh_interval=5)
    with pytest.raises(KeysUnavailable) as unavailable:
        keys.get("k1")
    assert 5 <= unavailable.value.retry_after <= 6
    with pytest.raises(KeysUnavailable):
        keys.get("k1")  # within the backoff: no second fetch
    assert auth.calls == 1


def test_a_refresh_runs_in_the_background_while_requests_use_the_keys_in_hand():
    """Auth hangs: the refresh waits on it in a thread of its own, requests never do."""
    auth = Auth("k1")
    keys = key_set(auth, ttl=0.2, min_refresh_interval=0.05, background=True)
    keys.get("k1")
    assert auth.returned.wait(2)
    auth.hung()
    time.sleep(0.3)  # the cache has expired
    started = time.monotonic()
    results = []

    def read():
        for _ in range(50):
            results.append(keys.get("k1") is not None)

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    elapsed = time.monotonic() - started
    auth.hang.set()
    assert results == [True] * 400
    assert elapsed < 1.0  # nobody waited on the hung fetch
    assert auth.calls == 2  # one fetch for 400 reads: the one in flight


def test_an_unknown_kid_waits_for_the_fetch_that_brings_it():
    auth = Auth("k1")
    keys = key_set(auth, min_refresh_interval=0.01, background=True)
    keys.get("k1")
    time.sleep(0.02)
    auth.kids.append("k2")
    assert keys.get("k2") is not None


def test_an_unknown_kid_waits_no_longer_than_the_wait_when_auth_hangs():
    auth = Auth("k1")
    keys = key_set(auth, min_refresh_interval=0.01, wait=0.2, background=True)
    keys.get("k1")
    time.sleep(0.02)
    auth.hung()
    started = time.monotonic()
    assert keys.get("k2") is None
    assert 0.2 <= time.monotonic() - started < 1.0
    auth.hang.set()


def test_a_fresh_auth_worker_waits_for_its_own_keys_however_long_their_read_takes():
    """Auth reads its keys in the requesting thread: a second request arriving meanwhile waits for
    that read, even past `wait`, instead of answering 503 with the keys a moment away."""
    auth = Auth("k1")
    auth.hung()  # the first read of the database is slow
    keys = key_set(auth, wait=0.05, background=False)
    first = threading.Thread(target=keys.get, args=("k1",))
    first.start()
    while auth.calls == 0:
        time.sleep(0.005)
    answers = []
    second = threading.Thread(target=lambda: answers.append(keys.get("k1")))
    second.start()
    time.sleep(0.3)  # six times `wait`
    assert second.is_alive()  # still waiting, not refused
    auth.hang.set()
    first.join(5)
    second.join(5)
    assert answers and answers[0] is not None
    assert auth.calls == 1


# --- the kept key set: a fresh process verifies from it while auth is down --------------------------


@pytest.mark.django_db(transaction=True)  # the background fetch writes through a connection of its own
def test_a_good_key_set_is_kept_in_the_database():
    auth = Auth("k1")
    store = KeySetSnapshotStore("http://auth.test/.well-known/jwks.json")
    keys = key_set(auth, store=store, background=True)
    assert keys.get("k1") is not None
    deadline = time.monotonic() + 5
    while not KeySetSnapshot.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    snapshot = KeySetSnapshot.objects.get()
    assert snapshot.source == "http://auth.test/.well-known/jwks.json"
    assert [key["kid"] for key in snapshot.document["keys"]] == ["k1"]


@pytest.mark.django_db
def test_a_fresh_process_verifies_from_the_kept_key_set_while_auth_is_down(clock):
    store = KeySetSnapshotStore("http://auth.test/.well-known/jwks.json")
    store.save(jwks_of("k1"))
    auth = Auth()
    auth.down = True
    keys = key_set(auth, store=store)
    assert keys.get("k1") is not None
    assert auth.calls == 0  # the kept set is fresh: nothing to fetch


@pytest.mark.django_db
def test_a_kept_key_set_older_than_the_ttl_is_used_and_refreshed(clock):
    store = KeySetSnapshotStore("http://auth.test/.well-known/jwks.json")
    store.save(jwks_of("k1"))
    KeySetSnapshot.objects.update(fetched_at=datetime.now(tz=UTC) - timedelta(hours=2))
    auth = Auth("k1", "k2")
    keys = key_set(auth, store=store)
    assert keys.get("k1") is not None
    assert auth.calls == 1
    assert keys.get("k2") is not None  # what the refresh brought


@pytest.mark.django_db
def test_the_kept_key_set_of_another_auth_url_is_not_used(clock):
    KeySetSnapshotStore("http://old-auth.test/.well-known/jwks.json").save(jwks_of("k1"))
    auth = Auth()
    auth.down = True
    keys = key_set(auth, store=KeySetSnapshotStore("http://auth.test/.well-known/jwks.json"))
    with pytest.raises(KeysUnavailable):
        keys.get("k1")


def test_an_unknown_kid_does_not_wait_while_fetches_are_failing():
    auth = Auth("k1")
    keys = key_set(auth, min_refresh_interval=0.01, max_backoff=0.01, wait=5, background=True)
    keys.get("k1")
    time.sleep(0.02)
    auth.down = True
    keys.get("k2")  # this fetch fails: auth is failing from now on
    time.sleep(0.05)
    auth.hung()
    started = time.monotonic()
    assert keys.get("k3") is None
    assert time.monotonic() - started < 1.0
    auth.hang.set()
