"""Local verification of access tokens against auth's published keys (JWKS).

Services never call auth per request: public keys are cached for JWKS_CACHE_SECONDS. Verification
must outlive an auth outage, so the cache degrades instead of failing:

- A request whose `kid` is cached never waits on auth, even when the cache is older than its time
  to live: one background thread refreshes it while every request goes on with the keys in hand.
- Fetches are single-flight and spaced: at most one per JWKS_MIN_REFRESH_INTERVAL_SECONDS, whatever
  the trigger (an expired cache or a `kid` the cache lacks), and after a failure the next attempt
  waits longer each time (exponential, capped at JWKS_MAX_BACKOFF_SECONDS). Random `kid`s therefore
  cost auth at most one fetch per interval, and an outage costs it nothing more than the backoff.
- A request with a `kid` the cache lacks waits (JWKS_FETCH_WAIT_SECONDS at most) for the fetch it
  started, which may bring a rotated key; while fetches are failing it does not wait at all. In auth,
  which reads its own keys from its database in the requesting thread, a request waits for that read
  to end.
- Each good key set is kept in the service's own database (`KeySetSnapshot`), so a fresh worker or
  pod starts verifying from it while auth is down.

Keys are never dropped for being old, only replaced by a newer answer: during an outage no new
tokens are issued, and the ones in circulation expire within ACCESS_TOKEN_TTL_SECONDS anyway.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Protocol

import jwt
from django.conf import settings
from django.db import DatabaseError, connections
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core import service_calls
from apps.core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

USER = "user"
SERVICE = "service"
# Claims that are NumericDate values (RFC 7519 section 2): a JSON number, never a string.
NUMERIC_DATE_CLAIMS = ("exp", "iat", "nbf")


@dataclass(frozen=True)
class Principal:
    """The verified caller: an end user (`kind` user, `subject` the user id) or a service client."""

    subject: str
    kind: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str = ""
    email: str = ""  # a user's address for receipts, from the token: no call to auth to learn it
    is_authenticated: ClassVar[bool] = True  # what DRF's IsAuthenticated looks at

    @property
    def is_service(self) -> bool:
        return self.kind == SERVICE


class InvalidToken(exceptions.AuthenticationFailed):
    default_code = "invalid_token"


class SigningKeysUnavailable(ServiceUnavailable):
    """503 with Retry-After: this process has no key yet and auth cannot be reached."""

    default_detail = "Signing keys could not be loaded from the auth service; retry later."

    def __init__(self, *, retry_after: float):
        super().__init__()
        self.headers = {"Retry-After": str(max(1, round(retry_after)))}


class KeysUnavailable(Exception):
    """No key has ever been loaded in this process and auth cannot be reached now."""

    def __init__(self, retry_after: float):
        super().__init__("no signing keys loaded and auth unreachable")
        self.retry_after = retry_after


class KeySetStore(Protocol):
    """Where the last good JWKS document survives the process (see `KeySetSnapshotStore`)."""

    def load(self) -> tuple[dict, float] | None:
        """The document and its age in seconds, or None when nothing was kept."""

    def save(self, document: dict) -> None: ...


def keys_from_document(document: dict) -> dict[str, object]:
    """The RSA signature keys of a JWKS document by `kid`; entries of any other kind are skipped."""
    keys = {}
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(jwk, dict):
            continue
        if isinstance(jwk.get("kid"), str) and jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig":
            try:
                keys[jwk["kid"]] = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
            except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
                logger.warning("JWKS entry skipped: not a usable RSA key", extra={"kid": jwk["kid"]})
    return keys


class KeySet:
    """Public keys by `kid`, loaded by `loader` (a JWKS document), cached, refreshed without blocking.

    `background`: fetch in a thread of its own (a remote loader, whose answer may take seconds or
    never come) rather than in the calling thread (auth's loader reads its own database).
    """

    def __init__(
        self,
        loader: Callable[[], dict],
        *,
        ttl: float,
        min_refresh_interval: float,
        max_backoff: float,
        wait: float,
        store: KeySetStore | None = None,
        background: bool = True,
    ):
        self._loader = loader
        self._ttl = ttl
        self._min_refresh_interval = min_refresh_interval
        self._max_backoff = max(max_backoff, min_refresh_interval)
        self._wait = wait
        self._store = store
        self._background = background
        self._keys: dict[str, object] = {}
        self._loaded_at = float("-inf")  # monotonic time the keys were fetched
        self._next_fetch_at = float("-inf")  # no fetch starts before this
        self._failures = 0  # consecutive failed fetches
        self._flight: threading.Event | None = None  # set when the fetch under way ends
        self._restored = store is None
        self._lock = threading.Lock()  # guards the fields above; never held during I/O

    # --- what verification asks ------------------------------------------------------------------
    def get(self, kid: str):
        """The public key for `kid`, or None if auth does not publish it.

        Raises KeysUnavailable only when no key set was ever had (nothing kept, auth unreachable).
        """
        self._restore_once()
        started = None
        with self._lock:
            now = time.monotonic()
            key = self._keys.get(kid)
            stale = now - self._loaded_at > self._ttl
            flight = self._flight
            if flight is None and now >= self._next_fetch_at and (stale or key is None):
                flight = started = self._fetch_reserve(now)
            # The fetch under way may bring a rotated key: worth a short wait, unless fetches are
            # failing (it would only hold a thread, and a flood of forged kids would hold them all).
            worth_waiting = self._failures == 0 or not self._keys
        if started is not None:
            self._fetch_launch(started)
        if key is not None:
            return key  # a known kid never waits, whatever the fetch is doing
        if flight is not None and worth_waiting:
            # A fetch run in a caller's thread reads this process's own keys (auth's database), and
            # is waited for to its end: a busy node can make that first read of a fresh worker
            # outlast `wait`, and the key it brings is the one every waiting request needs. `wait`
            # bounds only fetches from auth, which may never answer.
            flight.wait(None if not self._background else self._wait)
        with self._lock:
            if not self._keys:
                raise KeysUnavailable(retry_after=max(1.0, self._next_fetch_at - time.monotonic()))
            return self._keys.get(kid)

    # --- fetching --------------------------------------------------------------------------------
    def _fetch_reserve(self, now: float) -> threading.Event:
        """With the lock held: take the one fetch slot, and space the next one by the interval."""
        flight = threading.Event()
        self._flight = flight
        self._next_fetch_at = now + self._min_refresh_interval
        return flight

    def _fetch_launch(self, flight: threading.Event) -> None:
        if self._background:
            threading.Thread(target=self._fetch, args=(flight,), name="jwks-refresh", daemon=True).start()
        else:
            self._fetch(flight)

    def _fetch(self, flight: threading.Event) -> None:
        try:
            document = self._loader()
            keys = keys_from_document(document)
            if not keys:
                raise ValueError("the JWKS document has no usable key")
        except Exception as error:
            with self._lock:
                self._failures += 1
                # Exponential backoff with a little jitter upward, so that workers and pods that failed
                # together do not retry together; never sooner than the interval.
                delay = min(self._max_backoff, self._min_refresh_interval * 2 ** (self._failures - 1))
                delay *= random.uniform(1.0, 1.2)  # noqa: S311 (spreading retries, not cryptography)
                self._next_fetch_at = time.monotonic() + delay
                kept = len(self._keys)
            logger.warning(
                "JWKS refresh failed; verifying with the keys in hand",
                extra={"error": repr(error), "keys_kept": kept, "failures": self._failures, "retry_in_s": delay},
            )
        else:
            with self._lock:
                self._keys = keys
                self._loaded_at = time.monotonic()
                self._next_fetch_at = self._loaded_at + self._min_refresh_interval
                self._failures = 0
            self._store_save(document)
        finally:
            with self._lock:
                self._flight = None
            flight.set()
            if self._background:
                connections.close_all()  # this thread's own connections, if the store opened one

    # --- the kept copy ---------------------------------------------------------------------------
    def _restore_once(self) -> None:
        if self._restored:
            return
        with self._lock:
            if self._restored:
                return
            self._restored = True
            try:
                kept = self._store.load()
            except DatabaseError as error:
                logger.warning("kept JWKS unreadable", extra={"error": repr(error)})
                return
            if kept is None:
                return
            document, age = kept
            keys = keys_from_document(document)
            if keys and not self._keys:
                self._keys = keys
                self._loaded_at = time.monotonic() - age  # stale when it is: then refreshed in the background

    def _store_save(self, document: dict) -> None:
        if self._store is None:
            return
        try:
            self._store.save(document)
        except DatabaseError as error:
            logger.warning("JWKS could not be kept", extra={"error": repr(error)})


class KeySetSnapshotStore:
    """Keeps the last good JWKS of one source in the service's own database (`core.KeySetSnapshot`)."""

    def __init__(self, source: str):
        self.source = source

    def load(self) -> tuple[dict, float] | None:
        from apps.core.models import KeySetSnapshot  # noqa: PLC0415 (models load after the app registry)

        snapshot = KeySetSnapshot.objects.filter(source=self.source).first()
        if snapshot is None:
            return None
        return snapshot.document, max(0.0, (datetime.now(tz=UTC) - snapshot.fetched_at).total_seconds())

    def save(self, document: dict) -> None:
        from apps.core.models import KeySetSnapshot  # noqa: PLC0415

        KeySetSnapshot.objects.update_or_create(
            source=self.source, defaults={"document": document, "fetched_at": datetime.now(tz=UTC)}
        )


def _load_remote_jwks() -> dict:
    response = service_calls.call(
        "GET",
        settings.AUTH_URL,
        "/.well-known/jwks.json",
        auth=None,
        timeout=(settings.SERVICE_CALL_CONNECT_TIMEOUT, settings.JWKS_FETCH_TIMEOUT_SECONDS),
    )
    response.raise_for_status()
    return response.json()


# A service that holds the keys itself (auth) registers how to read them; everyone else fetches them.
_local_loader: Callable[[], dict] | None = None
_key_set: KeySet | None = None
_key_set_lock = threading.Lock()


def local_key_loader_register(loader: Callable[[], dict] | None) -> Callable[[], dict] | None:
    """Verify with keys this process publishes itself (the auth app registers its loader when it is
    installed); None goes back to fetching them from auth. Returns the loader registered before."""
    global _local_loader, _key_set
    with _key_set_lock:
        previous, _local_loader = _local_loader, loader
        _key_set = None
        return previous


def key_set() -> KeySet:
    """The process's key cache: auth's registered loader in the auth process, HTTP elsewhere."""
    global _key_set
    kept = _key_set  # every verification asks: once made, no lock to take
    if kept is not None:
        return kept
    with _key_set_lock:
        if _key_set is None:
            common = {
                "ttl": settings.JWKS_CACHE_SECONDS,
                "min_refresh_interval": settings.JWKS_MIN_REFRESH_INTERVAL_SECONDS,
                "max_backoff": settings.JWKS_MAX_BACKOFF_SECONDS,
                "wait": settings.JWKS_FETCH_WAIT_SECONDS,
            }
            if _local_loader is not None:
                _key_set = KeySet(_local_loader, background=False, **common)
            else:
                jwks_url = f"{settings.AUTH_URL}/.well-known/jwks.json"
                _key_set = KeySet(_load_remote_jwks, store=KeySetSnapshotStore(jwks_url), **common)
        return _key_set


def reset_key_set() -> None:
    """Forget the cached keys and the tokens they verified: the next verification loads them afresh
    (tests, key rotation drills)."""
    global _key_set
    with _key_set_lock:
        _key_set = None
    verified_tokens.clear()


def _claims_shape_check(claims: dict) -> None:
    """Types PyJWT does not enforce, or enforces loosely: it would take `"exp": "9999999999"` as a date."""
    for name in NUMERIC_DATE_CLAIMS:
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
            raise InvalidToken(f"The access token's {name!r} claim is not a number.")
    for name in ("sub", "jti"):
        if name in claims and (not isinstance(claims[name], str) or not claims[name]):
            raise InvalidToken(f"The access token's {name!r} claim is not a string.")
    for name in ("scope", "kind", "email"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"The access token's {name!r} claim is not a string.")
    if claims.get("kind", USER) == USER and "sub" in claims:
        try:
            uuid.UUID(claims["sub"])
        except ValueError:
            raise InvalidToken("The access token's subject is not a user id.") from None


_REGISTERED_CLAIM_CHECKS = ("verify_exp", "verify_nbf", "verify_iat", "verify_aud", "verify_iss")
_SIGNATURE_ONLY = {
    "verify_signature": True,
    **dict.fromkeys((*_REGISTERED_CLAIM_CHECKS, "verify_sub", "verify_jti"), False),
}
# The signature was verified on the same token: this pass checks the registered claims only.
_CLAIMS_ONLY = {
    "verify_signature": False,
    **dict.fromkeys(_REGISTERED_CLAIM_CHECKS, True),
    "require": ["exp", "iat", "iss", "aud", "sub", "jti"],
    "strict_aud": True,
}


def _public_key_for(token: str) -> tuple[str, object]:
    """The kid and published key that must have signed `token`, from its header (alg pinned, kid named)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidToken("The access token is malformed.") from None
    if header.get("alg") != settings.JWT_ALGORITHM:
        raise InvalidToken(f"Tokens signed with {str(header.get('alg'))[:16]!r} are not accepted.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The access token names no signing key (kid).")
    try:
        public_key = key_set().get(kid)
    except KeysUnavailable as unavailable:
        raise SigningKeysUnavailable(retry_after=unavailable.retry_after) from None
    if public_key is None:
        raise InvalidToken("The access token was signed by an unknown key.")
    return kid, public_key


def _registered_claims_check(token: str) -> None:
    try:
        jwt.decode(
            token,
            algorithms=[settings.JWT_ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options=_CLAIMS_ONLY,
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The access token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("The access token is not valid yet.") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("The access token is not meant for this API (audience).") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("The access token was not issued by the auth service (issuer).") from None
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(f'Token is missing the "{error.claim}" claim.') from None
    except jwt.InvalidTokenError:
        raise InvalidToken("The access token is invalid.") from None


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str
    key: object  # the key object that verified the signature, as the key set held it
    expires: float
    not_before: float
    issued_at: float


class VerifiedTokens:
    """Tokens this process has verified, by their text, so that the next request with the same token
    skips decoding it three times and checking its RSA signature (a user's client sends one token
    with every request for its lifetime, ACCESS_TOKEN_TTL_SECONDS).

    An entry is used only while the key set still holds the very key object that verified it (a JWKS
    refresh makes new objects, so a rotated or withdrawn key makes the token verify afresh), and the
    times are checked on every use as PyJWT checks them, leeway included: a token expires from the
    cache exactly when it would have failed verification. Only tokens that passed are kept; at most
    `size` of them, the oldest dropped first.
    """

    def __init__(self, size: int = 1024):
        self.size = size
        self._entries: dict[str, _Verified] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> _Verified | None:
        return self._entries.get(token)

    def add(self, token: str, entry: _Verified) -> None:
        with self._lock:
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[token] = entry

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_tokens = VerifiedTokens()


def _now() -> float:
    return datetime.now(tz=UTC).timestamp()  # PyJWT's clock


def _verified_again(token: str) -> Principal | None:
    """The principal of a token verified before, when its key and its times still hold; else None."""
    entry = verified_tokens.get(token)
    if entry is None:
        return None
    try:
        still_published = key_set().get(entry.kid) is entry.key
    except KeysUnavailable:
        still_published = False
    if not still_published:
        verified_tokens.discard(token)
        return None
    now, leeway = _now(), settings.JWT_LEEWAY_SECONDS
    if entry.expires <= now - leeway:
        verified_tokens.discard(token)
        raise InvalidToken("The access token has expired.")
    if entry.not_before > now + leeway or entry.issued_at > now + leeway:
        verified_tokens.discard(token)
        return None  # the clock went back: verify in full, which says why
    return entry.principal


def access_token_known(token: str) -> Principal | None:
    """The principal of a token this process has verified and that still holds (its key still
    published, its times still valid), without waiting on anything; None for any other token, which
    `access_token_verify` then verifies in full and says what is wrong with."""
    try:
        return _verified_again(token)
    except InvalidToken:
        return None


def access_token_verify(token: str) -> Principal:
    """Verify signature, algorithm, issuer, audience, times and claim types; raise InvalidToken with the reason."""
    principal = _verified_again(token)
    if principal is not None:
        return principal
    kid, public_key = _public_key_for(token)
    try:  # the signature first: nothing in the claims is trusted before it holds
        claims = jwt.decode(token, public_key, algorithms=[settings.JWT_ALGORITHM], options=_SIGNATURE_ONLY)
    except jwt.InvalidTokenError:
        raise InvalidToken("The access token is invalid.") from None
    _claims_shape_check(claims)
    _registered_claims_check(token)
    kind = claims.get("kind", USER)
    if kind not in {USER, SERVICE}:
        raise InvalidToken("The access token names an unknown kind of subject.")
    principal = Principal(
        subject=claims["sub"],
        kind=kind,
        scopes=frozenset(claims.get("scope", "").split()),
        token_id=claims["jti"],
        email=claims.get("email", "") if kind == USER else "",
    )
    verified_tokens.add(
        token,
        _Verified(
            principal=principal,
            kid=kid,
            key=public_key,
            # As PyJWT compares them: whole seconds.
            expires=int(claims["exp"]),
            not_before=int(claims["nbf"]) if "nbf" in claims else float("-inf"),
            issued_at=int(claims["iat"]),
        ),
    )
    return principal


class JwtAuthentication(authentication.BaseAuthentication):
    """DRF authentication from `Authorization: Bearer <access token>`; no header means anonymous."""

    keyword = "bearer"

    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise InvalidToken("Use `Authorization: Bearer <access token>`.")
        principal = access_token_verify(token.strip())
        return principal, token.strip()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
