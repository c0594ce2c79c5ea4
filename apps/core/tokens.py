"""Local verification of access tokens against auth's published keys (JWKS).

Services never call auth per request: public keys are cached for JWKS_CACHE_SECONDS and refetched
early only when a token names a `kid` the cache lacks (key rotation), at most once per
JWKS_MIN_REFRESH_INTERVAL_SECONDS so that random `kid`s cannot turn into a flood of fetches.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import jwt
from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core import service_calls
from apps.core.errors import ServiceUnavailable

USER = "user"
SERVICE = "service"


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


class KeySet:
    """Public keys by `kid`, loaded by `loader` (a JWKS document) and cached with a time to live."""

    def __init__(self, loader: Callable[[], dict], *, ttl: float, min_refresh_interval: float):
        self._loader = loader
        self._ttl = ttl
        self._min_refresh_interval = min_refresh_interval
        self._keys: dict[str, object] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        document = self._loader()
        keys = {}
        for jwk in document.get("keys", []):
            if jwk.get("kid") and jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig":
                keys[jwk["kid"]] = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
        self._keys = keys
        self._loaded_at = time.monotonic()

    def get(self, kid: str):
        """The public key for `kid`, or None if auth does not publish it."""
        with self._lock:
            age = time.monotonic() - self._loaded_at
            stale = age > self._ttl
            unknown_and_may_refetch = kid not in self._keys and age > self._min_refresh_interval
            if stale or unknown_and_may_refetch:
                try:
                    self._refresh()
                except Exception:
                    if not self._keys:
                        raise
                    # Auth unreachable: keep verifying with the keys we have rather than fail closed.
            return self._keys.get(kid)


def _load_remote_jwks() -> dict:
    response = service_calls.call("GET", settings.AUTH_URL, "/.well-known/jwks.json", auth=None)
    response.raise_for_status()
    return response.json()


def _load_local_jwks() -> dict:
    from apps.auth.keys import jwks  # noqa: PLC0415 (the auth app is installed only in the auth process)

    return jwks()


_key_set: KeySet | None = None
_key_set_lock = threading.Lock()


def key_set() -> KeySet:
    """The process's key cache: read from the database in the auth process, over HTTP elsewhere."""
    global _key_set
    with _key_set_lock:
        if _key_set is None:
            loader = _load_local_jwks if "auth" in settings.SERVED_NAMES else _load_remote_jwks
            _key_set = KeySet(
                loader, ttl=settings.JWKS_CACHE_SECONDS, min_refresh_interval=settings.JWKS_MIN_REFRESH_INTERVAL_SECONDS
            )
        return _key_set


def reset_key_set() -> None:
    global _key_set
    with _key_set_lock:
        _key_set = None


def access_token_verify(token: str) -> Principal:
    """Verify signature, algorithm, issuer, audience and expiry; raise InvalidToken with the reason."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidToken("The access token is malformed.") from None
    if header.get("alg") != settings.JWT_ALGORITHM:
        raise InvalidToken(f"Tokens signed with {header.get('alg')!r} are not accepted.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The access token names no signing key (kid).")
    try:
        public_key = key_set().get(kid)
    except Exception:
        raise ServiceUnavailable("Signing keys could not be loaded from the auth service.") from None
    if public_key is None:
        raise InvalidToken("The access token was signed by an unknown key.")
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=[settings.JWT_ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            leeway=settings.JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The access token has expired.") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("The access token is not meant for this API (audience).") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("The access token was not issued by the auth service (issuer).") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"The access token is invalid: {error}.") from None
    kind = claims.get("kind", USER)
    if kind not in {USER, SERVICE}:
        raise InvalidToken("The access token names an unknown kind of subject.")
    return Principal(
        subject=str(claims["sub"]),
        kind=kind,
        scopes=frozenset(str(claims.get("scope", "")).split()),
        token_id=str(claims["jti"]),
        email=claims["email"] if kind == USER and isinstance(claims.get("email"), str) else "",
    )


class JwtAuthentication(authentication.BaseAuthentication):
    """DRF authentication from `Authorization: Bearer <access token>`; no header means anonymous."""

    keyword = "bearer"

    def authenticate(self, request: Request):
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise InvalidToken("Use `Authorization: Bearer <access token>`.")
        principal = access_token_verify(token.strip())
        return principal, token.strip()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
