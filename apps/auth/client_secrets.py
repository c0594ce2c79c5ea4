"""Service clients' secrets are stored as a salted HMAC-SHA-256, not with the password hasher.

A password is chosen by a person, so it is stored with a slow key-derivation function (Django's
PBKDF2, about a quarter of a second of CPU per check here) to make guessing it from a stolen hash costly.
A client secret is made by a machine (`openssl rand -hex 32`) and at least MIN_LENGTH characters
long: with 128 bits or more to guess, a slow hash buys nothing, and it cost every token request that
quarter second. On a node busy starting a dozen pods, that CPU made a new pod's first token request
outlast its timeout and the pod's first orders fail, which is why it went.

Hashes written by the password hasher before still verify, and are rewritten in this form on the
first token request they let through.
"""

import hashlib
import hmac
import secrets

from django.contrib.auth.hashers import check_password

ALGORITHM = "hmac-sha256"
MIN_LENGTH = 32

# Checked against when the client is unknown, so that an unknown client costs what a wrong secret
# costs and the answer's timing does not tell which client ids exist.
_DUMMY_HASH = f"{ALGORITHM}${'0' * 32}${'0' * 64}"


def client_secret_hash(secret: str) -> str:
    """`hmac-sha256$<salt>$<hex digest>`, with a fresh random salt."""
    salt = secrets.token_hex(16)
    return f"{ALGORITHM}${salt}${_digest(salt=salt, secret=secret)}"


def client_secret_check(secret: str, encoded: str | None) -> bool:
    """Whether the secret matches the stored hash (None: an unknown client, always False)."""
    algorithm, _, rest = (encoded or _DUMMY_HASH).partition("$")
    if algorithm != ALGORITHM:
        return check_password(secret, encoded)  # a hash the password hasher wrote
    salt, _, digest = rest.partition("$")
    matches = hmac.compare_digest(_digest(salt=salt, secret=secret), digest)
    return matches and encoded is not None


def client_secret_outdated(encoded: str) -> bool:
    """Whether the stored hash is not in this module's form and should be rewritten."""
    return not encoded.startswith(f"{ALGORITHM}$")


def _digest(*, salt: str, secret: str) -> str:
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()
