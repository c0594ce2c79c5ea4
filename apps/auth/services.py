"""Writes of the auth service: registration, logins, token issue, rotation and revocation.

Every endpoint a client reaches without a token is rate limited here (apps.core.ratelimit, counted
in this service's database, so across all workers and pods), per client address and per account.
"""

import hashlib
import ipaddress
import secrets
import unicodedata
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
from apps.auth.client_secrets import client_secret_check, client_secret_hash, client_secret_outdated
from apps.auth.models import LoginAddress, LoginFailure, RefreshToken, ServiceClient, User
from apps.core import metrics
from apps.core.errors import Conflict
from apps.core.ratelimit import Attempt, attempt_reserve, attempts_reset, rate_limit_take
from apps.core.rates import Backoff
from apps.core.tokens import SERVICE, USER

# Checked against when the email is unknown. It is an unusable hash, for which Django's
# check_password runs the default hasher once anyway: an unknown email costs what a wrong password
# costs, so the answer's timing does not tell whether an account exists.
_DUMMY_PASSWORD_HASH = make_password(None)

# Throttled logins are 429 problems, counted by scope in rate_limit_refusals_total.
LOGINS = metrics.counter(
    "auth_logins", "Password logins checked, by outcome.", {"outcome": ("succeeded", "invalid_credentials")}
)
TOKENS_ISSUED = metrics.counter(
    "auth_tokens_issued",
    "Access tokens issued, by OAuth2 grant: password (login), refresh_token, client_credentials (services).",
    {"grant": ("password", "refresh_token", "client_credentials")},
)
REFRESH_TOKEN_REUSES = metrics.counter(
    "auth_refresh_token_reuses", "Refresh tokens presented again after use: their whole login was revoked."
)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str | None = None


# The token endpoints authenticate by what the body carries, not by a header, so these are plain
# 401s: DRF would turn an AuthenticationFailed from a view without authenticators into a 403.
# RFC 9110 requires a challenge with every 401: the API's own scheme, a bearer token.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


class InvalidCredentials(exceptions.APIException):
    headers = CHALLENGE
    status_code = 401
    default_detail = "Invalid email or password."
    default_code = "invalid_credentials"


class InvalidRefreshToken(exceptions.APIException):
    headers = CHALLENGE
    status_code = 401
    default_detail = "The refresh token is invalid, expired or revoked."
    default_code = "invalid_refresh_token"


class InvalidClient(exceptions.APIException):
    headers = CHALLENGE
    status_code = 401
    default_detail = "Invalid client credentials."
    default_code = "invalid_client"


def email_normalize(email: str) -> str:
    """One spelling per address: Unicode NFKC (as Django normalizes user names), then lower case."""
    return unicodedata.normalize("NFKC", email.strip()).lower()


def _token_hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def user_register(*, email: str, password: str, client_address: str | None = None) -> User:
    """Create a user; Django's password validators apply; a taken email is a 409.

    Limited per client address (each registration hashes a password) and per email (a taken
    email answers 409, which must not be askable at will).
    """
    user = User(email=email_normalize(email))
    if client_address is not None:
        rate_limit_take(
            scope="register:address",
            key=client_address,
            rate=settings.RATE_LIMIT_REGISTER_PER_ADDRESS,
            detail="Too many registrations from this address.",
        )
    rate_limit_take(
        scope="register:email",
        key=user.email,
        rate=settings.RATE_LIMIT_REGISTER_PER_EMAIL,
        detail="Too many registrations for this email.",
    )
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


def _guessing_backoff(*, free: int) -> Backoff:
    return Backoff(
        free=free,
        base=settings.LOGIN_DELAY_BASE_SECONDS,
        maximum=settings.LOGIN_DELAY_MAX_SECONDS,
        window=settings.LOGIN_FAILURE_WINDOW_SECONDS,
    )


def _login_address_known(*, email: str, client_address: str) -> bool:
    address = _ip_or_none(client_address)
    if address is None:
        return False
    since = timezone.now() - timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS)
    return LoginAddress.objects.filter(
        user__email=email, user__is_active=True, address=address, last_login_at__gte=since
    ).exists()


def _secret_guess_reserve(*, kind: str, account: str, client_address: str, address_known: bool) -> None:
    """Count an attempt at an account's secret, per (address, account) and per account (unless from
    a known address); raise RateLimited while the exponential pause since the last one runs."""
    attempts = [
        Attempt(
            scope=f"{kind}:address-account",
            key=f"{client_address} {account}",
            backoff=_guessing_backoff(free=settings.LOGIN_FREE_ATTEMPTS_PER_ADDRESS),
            detail="Too many failed attempts for this account from this address; retry later.",
        )
    ]
    if not address_known:
        attempts.append(
            Attempt(
                scope=f"{kind}:account",
                key=account,
                backoff=_guessing_backoff(free=settings.LOGIN_FREE_ATTEMPTS_PER_ACCOUNT),
                detail="Too many failed attempts for this account; retry later.",
            )
        )
    attempt_reserve(*attempts)


def _secret_guesses_reset(*, kind: str, account: str, client_address: str) -> None:
    attempts_reset(scope=f"{kind}:account", key=account)
    attempts_reset(scope=f"{kind}:address-account", key=f"{client_address} {account}")


def user_login(*, email: str, password: str, client_address: str) -> TokenPair:
    """Check the password and issue an access token and the first refresh token of a new family.

    Throttled, never locked: per client address a token bucket; per account and per (address,
    account) an exponential delay after a few attempts, where an address the user has logged in
    from before is exempt from the per-account delay. A correct password resets both delays.
    """
    email = email_normalize(email)
    rate_limit_take(
        scope="login:address",
        key=client_address,
        rate=settings.RATE_LIMIT_LOGIN_PER_ADDRESS,
        detail="Too many logins from this address.",
    )
    known = _login_address_known(email=email, client_address=client_address)
    _secret_guess_reserve(kind="login", account=email, client_address=client_address, address_known=known)
    user = User.objects.filter(email=email, is_active=True).first()
    password_ok = check_password(password, user.password if user else _DUMMY_PASSWORD_HASH)
    if user is None or not password_ok:
        LoginFailure.objects.create(email=email, remote_addr=_ip_or_none(client_address))
        LOGINS.labels(outcome="invalid_credentials").inc()
        raise InvalidCredentials()
    now = timezone.now()
    with transaction.atomic():
        _secret_guesses_reset(kind="login", account=email, client_address=client_address)
        if address := _ip_or_none(client_address):
            LoginAddress.objects.update_or_create(user=user, address=address, defaults={"last_login_at": now})
        User.objects.filter(pk=user.pk).update(last_login_at=now)
        metrics.count_after_commit(LOGINS, outcome="succeeded")
        metrics.count_after_commit(TOKENS_ISSUED, grant="password")
        return _user_token_pair(user=user, family=uuid.uuid4())


def _ip_or_none(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _family_revoke(*, family: uuid.UUID, reason: str) -> int:
    return refresh_token_families_revoke(families=[family], reason=reason)


def refresh_token_families_revoke(*, families: list[uuid.UUID], reason: str) -> int:
    """Revoke every unrevoked token of these logins (families); returns how many were revoked."""
    return RefreshToken.objects.filter(family__in=families, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def user_deactivate(*, user_id: uuid.UUID, reason: str = "admin") -> None:
    """Keep a user out: no login, no refresh. Access tokens already issued expire within their TTL."""
    with transaction.atomic():
        User.objects.filter(pk=user_id).update(is_active=False)
        families = RefreshToken.objects.filter(user_id=user_id).values_list("family", flat=True).distinct()
        refresh_token_families_revoke(families=list(families), reason=reason)


def service_client_deactivate(*, client_id: str) -> None:
    """Refuse the client new tokens (those issued expire within CLIENT_TOKEN_TTL_SECONDS)."""
    ServiceClient.objects.filter(client_id=client_id).update(is_active=False)


def refresh_token_rotate(*, raw_token: str, client_address: str | None = None) -> TokenPair:
    """Exchange a refresh token for a new pair. A second use of the same token revokes its family.

    Limited per client address and per user.
    """
    if client_address is not None:
        rate_limit_take(
            scope="refresh:address",
            key=client_address,
            rate=settings.RATE_LIMIT_REFRESH_PER_ADDRESS,
            detail="Too many token refreshes from this address.",
        )
    with transaction.atomic():
        token = (
            RefreshToken.objects.select_for_update()
            .select_related("user")
            .filter(token_hash=_token_hash(raw_token))
            .first()
        )
        if token is None:
            raise InvalidRefreshToken()
        rate_limit_take(
            scope="refresh:user",
            key=str(token.user_id),
            rate=settings.RATE_LIMIT_REFRESH_PER_USER,
            detail="Too many token refreshes for this user.",
        )
        reused = token.used_at is not None or token.revoked_at is not None
        if reused:
            _family_revoke(family=token.family, reason="reuse")
        else:
            if token.expires_at <= timezone.now() or not token.user.is_active:
                raise InvalidRefreshToken()
            token.used_at = timezone.now()
            token.save(update_fields=["used_at"])
            pair = _user_token_pair(user=token.user, family=token.family)
            metrics.count_after_commit(TOKENS_ISSUED, grant="refresh_token")
    if reused:
        REFRESH_TOKEN_REUSES.inc()  # raised after the commit, so the revocation stands
        raise InvalidRefreshToken("The refresh token was already used; every token of this login is revoked.")
    return pair


def refresh_token_revoke(*, raw_token: str) -> None:
    """Log out: revoke the refresh token's whole family. Unknown tokens are ignored (idempotent)."""
    token = RefreshToken.objects.filter(token_hash=_token_hash(raw_token)).first()
    if token is not None:
        _family_revoke(family=token.family, reason="logout")


def client_token_issue(*, client_id: str, client_secret: str, client_address: str = "") -> TokenPair:
    """OAuth2 client credentials: an access token carrying the client's scopes, no refresh token.

    Limited as logins are: per client address, and by delay per client and per (address, client).
    """
    rate_limit_take(
        scope="client-token:address",
        key=client_address,
        rate=settings.RATE_LIMIT_CLIENT_TOKEN_PER_ADDRESS,
        detail="Too many token requests from this address.",
    )
    _secret_guess_reserve(kind="client-token", account=client_id, client_address=client_address, address_known=False)
    client = ServiceClient.objects.filter(client_id=client_id, is_active=True).first()
    if not client_secret_check(client_secret, client.secret_hash if client else None):
        raise InvalidClient()
    if client_secret_outdated(client.secret_hash):
        ServiceClient.objects.filter(pk=client.pk, secret_hash=client.secret_hash).update(
            secret_hash=client_secret_hash(client_secret)
        )
    _secret_guesses_reset(kind="client-token", account=client_id, client_address=client_address)
    TOKENS_ISSUED.labels(grant="client_credentials").inc()
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
        defaults={
            "secret_hash": client_secret_hash(secret),
            "scopes": " ".join(sorted(set(scopes))),
            "is_active": True,
        },
    )
    return client
