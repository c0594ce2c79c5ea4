"""Writes of the auth service: registration, logins, token issue, rotation and revocation."""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions

from apps.auth import keys
from apps.auth.models import LoginFailure, RefreshToken, ServiceClient, User
from apps.core.errors import Conflict
from apps.core.tokens import SERVICE, USER

# Checked against when the email is unknown, so both answers take the same time.
_DUMMY_PASSWORD_HASH = make_password(None)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str | None = None


# The token endpoints authenticate by what the body carries, not by a header, so these are plain
# 401s: DRF would turn an AuthenticationFailed from a view without authenticators into a 403.
class InvalidCredentials(exceptions.APIException):
    status_code = 401
    default_detail = "Invalid email or password."
    default_code = "invalid_credentials"


class InvalidRefreshToken(exceptions.APIException):
    status_code = 401
    default_detail = "The refresh token is invalid, expired or revoked."
    default_code = "invalid_refresh_token"


class InvalidClient(exceptions.APIException):
    status_code = 401
    default_detail = "Invalid client credentials."
    default_code = "invalid_client"


def email_normalize(email: str) -> str:
    return email.strip().lower()


def _token_hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def user_register(*, email: str, password: str) -> User:
    """Create a user; Django's password validators apply; a taken email is a 409."""
    user = User(email=email_normalize(email))
    try:
        validate_password(password, user=user)
    except DjangoValidationError as error:
        raise DjangoValidationError({"password": error.messages}) from None
    user.password = make_password(password)
    user.full_clean(validate_unique=False)  # uniqueness is the database's job, below
    if User.objects.filter(email=user.email).exists():
        raise Conflict("A user with this email already exists.")
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError:  # registered concurrently between the check and the insert
        raise Conflict("A user with this email already exists.") from None
    return user


def _access_token(*, subject: str, kind: str, scopes: str, ttl: int, email: str = "") -> str:
    now = timezone.now()
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": subject,
        "kind": kind,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": uuid.uuid4().hex,
    }
    if scopes:
        claims["scope"] = scopes
    if email:  # services address receipts with it instead of asking auth on every order
        claims["email"] = email
    return keys.sign(claims)


def _refresh_token_create(*, user: User, family: uuid.UUID) -> str:
    raw_token = secrets.token_urlsafe(32)
    RefreshToken.objects.create(
        user=user,
        family=family,
        token_hash=_token_hash(raw_token),
        expires_at=timezone.now() + timedelta(seconds=settings.REFRESH_TOKEN_TTL_SECONDS),
    )
    return raw_token


def _user_token_pair(*, user: User, family: uuid.UUID) -> TokenPair:
    return TokenPair(
        access_token=_access_token(
            subject=str(user.id), kind=USER, scopes="", ttl=settings.ACCESS_TOKEN_TTL_SECONDS, email=user.email
        ),
        expires_in=settings.ACCESS_TOKEN_TTL_SECONDS,
        refresh_token=_refresh_token_create(user=user, family=family),
    )


def login_throttle_check(*, email: str) -> None:
    """429 once an email has had LOGIN_FAILURE_LIMIT failures within the window."""
    window_start = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    failures = LoginFailure.objects.filter(email=email, created_at__gte=window_start).order_by("created_at")
    if failures.count() >= settings.LOGIN_FAILURE_LIMIT:
        oldest = failures.first()
        wait = (oldest.created_at - window_start).total_seconds()
        raise exceptions.Throttled(wait=max(1, int(wait)), detail="Too many failed logins for this account.")


def user_login(*, email: str, password: str, remote_addr: str | None) -> TokenPair:
    """Check the password and issue an access token and the first refresh token of a new family."""
    email = email_normalize(email)
    login_throttle_check(email=email)
    user = User.objects.filter(email=email, is_active=True).first()
    password_ok = check_password(password, user.password if user else _DUMMY_PASSWORD_HASH)
    if user is None or not password_ok:
        LoginFailure.objects.create(email=email, remote_addr=remote_addr)
        raise InvalidCredentials()
    with transaction.atomic():
        LoginFailure.objects.filter(email=email).delete()
        User.objects.filter(pk=user.pk).update(last_login_at=timezone.now())
        return _user_token_pair(user=user, family=uuid.uuid4())


def _family_revoke(*, family: uuid.UUID, reason: str) -> int:
    return RefreshToken.objects.filter(family=family, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def refresh_token_rotate(*, raw_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair. A second use of the same token revokes its family."""
    with transaction.atomic():
        token = (
            RefreshToken.objects.select_for_update()
            .select_related("user")
            .filter(token_hash=_token_hash(raw_token))
            .first()
        )
        if token is None:
            raise InvalidRefreshToken()
        reused = token.used_at is not None or token.revoked_at is not None
        if reused:
            _family_revoke(family=token.family, reason="reuse")
        else:
            if token.expires_at <= timezone.now() or not token.user.is_active:
                raise InvalidRefreshToken()
            token.used_at = timezone.now()
            token.save(update_fields=["used_at"])
            pair = _user_token_pair(user=token.user, family=token.family)
    if reused:  # raised after the commit, so the revocation stands
        raise InvalidRefreshToken("The refresh token was already used; every token of this login is revoked.")
    return pair


def refresh_token_revoke(*, raw_token: str) -> None:
    """Log out: revoke the refresh token's whole family. Unknown tokens are ignored (idempotent)."""
    token = RefreshToken.objects.filter(token_hash=_token_hash(raw_token)).first()
    if token is not None:
        _family_revoke(family=token.family, reason="logout")


def client_token_issue(*, client_id: str, client_secret: str) -> TokenPair:
    """OAuth2 client credentials: an access token carrying the client's scopes, no refresh token."""
    client = ServiceClient.objects.filter(client_id=client_id, is_active=True).first()
    secret_ok = check_password(client_secret, client.secret_hash if client else _DUMMY_PASSWORD_HASH)
    if client is None or not secret_ok:
        raise InvalidClient()
    return TokenPair(
        access_token=_access_token(
            subject=client.client_id, kind=SERVICE, scopes=client.scopes, ttl=settings.CLIENT_TOKEN_TTL_SECONDS
        ),
        expires_in=settings.CLIENT_TOKEN_TTL_SECONDS,
    )


def service_client_ensure(*, client_id: str, secret: str, scopes: list[str]) -> ServiceClient:
    """Create or update a service client so that it has exactly this secret and these scopes."""
    client, _ = ServiceClient.objects.update_or_create(
        client_id=client_id,
        defaults={"secret_hash": make_password(secret), "scopes": " ".join(sorted(set(scopes))), "is_active": True},
    )
    return client
