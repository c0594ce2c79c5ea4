"""The auth service's signing key: loaded once per process, published through the JWKS.

Rotation: give auth a new AUTH_SIGNING_KEY; the new key is published the first time it is used,
the old one stays published (so tokens it signed still verify) until `manage.py signing_key_retire`.
"""

import base64
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from apps.auth.models import SigningKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    public_jwk: dict


def thumbprint(public_jwk: dict) -> str:
    """RFC 7638 JWK thumbprint: sha256 over the required members in lexicographic order."""
    canonical = json.dumps({name: public_jwk[name] for name in ("e", "kty", "n")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _development_key() -> bytes:
    """A key kept in the data folder so development tokens survive restarts. Never with DEBUG off."""
    path = Path(settings.DATA_DIR) / "auth-signing-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pem)
        path.chmod(0o600)
        logger.warning("generated a development signing key", extra={"path": str(path)})
    return path.read_bytes()


def _private_key_pem() -> bytes:
    if settings.AUTH_SIGNING_KEY_FILE:
        return Path(settings.AUTH_SIGNING_KEY_FILE).read_bytes()
    if settings.AUTH_SIGNING_KEY:
        return settings.AUTH_SIGNING_KEY.encode()
    if settings.DEBUG:
        return _development_key()
    raise ImproperlyConfigured(
        "the auth service needs AUTH_SIGNING_KEY_FILE or AUTH_SIGNING_KEY (an RSA private key, PEM)"
    )


_active: ActiveKey | None = None
_lock = threading.Lock()


def signing_key_load() -> rsa.RSAPrivateKey:
    """The configured private key, checked (RSA, at least 2048 bits); ImproperlyConfigured otherwise.

    Reads no database: the settings check (apps.auth.checks) calls it when a process starts.
    """
    try:
        private_key = serialization.load_pem_private_key(_private_key_pem(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ImproperlyConfigured(f"the auth signing key cannot be loaded: {error.__class__.__name__}") from None
    if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < 2048:
        raise ImproperlyConfigured("the auth signing key must be an RSA key of at least 2048 bits")
    return private_key


def active_key() -> ActiveKey:
    """The key that signs new tokens; published on first use in this process.

    A key configured again after it was retired (a rollback to the previous key) is published
    again: the tokens it signs must verify.
    """
    global _active
    with _lock:
        if _active is None:
            private_key = signing_key_load()
            public_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
            kid = thumbprint(public_jwk)
            public_jwk.update({"kid": kid, "use": "sig", "alg": settings.JWT_ALGORITHM})
            published, created = SigningKey.objects.get_or_create(kid=kid, defaults={"public_jwk": public_jwk})
            if not created and published.retired_at is not None:
                SigningKey.objects.filter(kid=kid).update(retired_at=None)
                logger.warning("a retired signing key is configured again: published again", extra={"kid": kid})
            _active = ActiveKey(kid=kid, private_key=private_key, public_jwk=public_jwk)
        return _active


class SigningKeyActive(Exception):
    """The key asked to be retired signs new tokens: retiring it would make them unverifiable."""


class SigningKeyUnknown(Exception):
    """No published key has this kid."""


def signing_key_retire(*, kid: str) -> None:
    """Stop publishing an old key (once every token it signed has expired). Never the active one."""
    if kid == active_key().kid:
        raise SigningKeyActive("this key signs new tokens; configure a new AUTH_SIGNING_KEY first")
    if not SigningKey.objects.filter(kid=kid, retired_at__isnull=True).update(retired_at=timezone.now()):
        raise SigningKeyUnknown(f"no published key with kid {kid}")


def jwks() -> dict:
    """The JWKS document: the active key and every earlier key not yet retired."""
    active_key()
    published = SigningKey.objects.filter(retired_at__isnull=True).values_list("public_jwk", flat=True)
    return {"keys": list(published)}


def sign(claims: dict) -> str:
    key = active_key()
    return jwt.encode(claims, key.private_key, algorithm=settings.JWT_ALGORITHM, headers={"kid": key.kid})


def forget_active_key() -> None:
    """Reload the key from configuration on next use (tests; a process never needs it otherwise)."""
    global _active
    with _lock:
        _active = None
