"""Retention of the auth service's append-only tables: failed logins past any throttling window,
refresh tokens past their expiry (a token that can no longer be used needs no reuse detection),
and login addresses no longer recent enough to count as known (LOGIN_KNOWN_ADDRESS_DAYS)."""

from datetime import timedelta

from django.db.models.functions import Now
from django.utils import timezone

from apps.auth.models import LoginAddress, LoginFailure, RefreshToken

CHUNK = 1000


def _chunked_delete(queryset) -> int:
    deleted = 0
    while chunk := list(queryset.values_list("pk", flat=True)[:CHUNK]):
        deleted += queryset.model.objects.filter(pk__in=chunk).delete()[0]
    return deleted


def login_failures_prune(*, older_than: timedelta) -> int:
    """Delete failed logins recorded more than `older_than` ago (the database's clock, as it wrote them)."""
    return _chunked_delete(LoginFailure.objects.filter(created_at__lt=Now() - older_than))


def refresh_tokens_prune(*, expired_for: timedelta) -> int:
    """Delete refresh tokens expired more than `expired_for` ago (this service's clock, as it set them)."""
    return _chunked_delete(RefreshToken.objects.filter(expires_at__lt=timezone.now() - expired_for))


def login_addresses_prune(*, older_than: timedelta) -> int:
    """Delete login addresses not logged in from for `older_than` (this service's clock, as it set them)."""
    return _chunked_delete(LoginAddress.objects.filter(last_login_at__lt=timezone.now() - older_than))
