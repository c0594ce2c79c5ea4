"""Settings for the test suite: production settings with test-only secrets, serving every service.

Tests run with DEBUG off so that they exercise what production runs.
"""

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

os.environ.setdefault("SERVICE", "all")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment-0123456789")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DEBUG", "false")
if not os.environ.get("AUTH_SIGNING_KEY"):
    _key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["AUTH_SIGNING_KEY"] = _key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

from apps.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing; never in production

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # In memory, which is Django's own test database for SQLite, said explicitly: pytest-django
    # recognises only Django's engine path as SQLite, and would otherwise give each pytest-xdist
    # worker a test database file named after this one's path.
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}  # noqa: F405
