"""Signing keys: stable kid, publication, rotation and retirement."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.auth import keys
from apps.auth.models import SigningKey

pytestmark = pytest.mark.django_db


def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_kid_is_the_rfc7638_thumbprint():
    # The example key of RFC 7638 section 3.1 and its published thumbprint.
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
            "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
            "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
            "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
    }
    assert keys.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rotation_publishes_the_new_key_beside_the_old(settings):
    old_kid = keys.active_key().kid
    settings.AUTH_SIGNING_KEY = pem()
    keys.forget_active_key()
    new_kid = keys.active_key().kid
    assert new_kid != old_kid
    assert {jwk["kid"] for jwk in keys.jwks()["keys"]} == {old_kid, new_kid}


def test_a_retired_key_is_no_longer_published(settings):
    old_kid = keys.active_key().kid
    settings.AUTH_SIGNING_KEY = pem()
    keys.forget_active_key()
    call_command("signing_key_retire", kid=old_kid)
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [keys.active_key().kid]
    assert SigningKey.objects.get(kid=old_kid).retired_at is not None


def test_the_active_key_cannot_be_retired():
    with pytest.raises(CommandError, match="signs new tokens"):
        call_command("signing_key_retire", kid=keys.active_key().kid)


@pytest.mark.parametrize("form", ["command line", "call_command keyword"])
def test_a_kid_beginning_with_a_dash_is_retired(settings, form):
    """A kid is base64url: one in 64 begins with "-", which must not read as an option name."""
    old_kid = keys.active_key().kid
    dashed = "-" + old_kid[1:]
    SigningKey.objects.filter(kid=old_kid).update(kid=dashed)
    keys.forget_active_key()
    settings.AUTH_SIGNING_KEY = pem()
    keys.active_key()
    if form == "command line":
        call_command("signing_key_retire", f"--kid={dashed}")
    else:
        call_command("signing_key_retire", kid=dashed)
    assert SigningKey.objects.get(kid=dashed).retired_at is not None


def test_the_kid_is_required():
    with pytest.raises(CommandError, match="--kid=KID"):
        call_command("signing_key_retire")


def test_an_unknown_kid_is_refused():
    with pytest.raises(CommandError, match="no published key with kid no-such-kid"):
        call_command("signing_key_retire", kid="no-such-kid")


def test_a_short_key_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the weak key the test expects refused)
    settings.AUTH_SIGNING_KEY = small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keys.forget_active_key()
    with pytest.raises(ImproperlyConfigured, match="at least 2048 bits"):
        keys.active_key()


def test_production_without_a_key_refuses_to_sign(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.AUTH_SIGNING_KEY = ""
    settings.AUTH_SIGNING_KEY_FILE = ""
    settings.DEBUG = False
    keys.forget_active_key()
    with pytest.raises(ImproperlyConfigured, match="needs AUTH_SIGNING_KEY_FILE or AUTH_SIGNING_KEY"):
        keys.active_key()


def test_a_retired_key_configured_again_is_published_again(settings):
    """Rolling a rotation back configures the old key again: the tokens it signs must verify."""
    first_pem = settings.AUTH_SIGNING_KEY
    old_kid = keys.active_key().kid
    settings.AUTH_SIGNING_KEY = pem()
    keys.forget_active_key()
    keys.active_key()
    call_command("signing_key_retire", kid=old_kid)
    settings.AUTH_SIGNING_KEY = first_pem
    keys.forget_active_key()
    assert keys.active_key().kid == old_kid
    assert old_kid in {jwk["kid"] for jwk in keys.jwks()["keys"]}
    assert SigningKey.objects.get(kid=old_kid).retired_at is None
