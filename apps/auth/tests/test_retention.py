"""Retention of auth's append-only tables (apps/auth/retention.py) and `manage.py auth_prune`."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.auth import retention
from apps.auth.models import LoginFailure, RefreshToken
from apps.auth.services import user_login

pytestmark = pytest.mark.django_db


def test_failed_logins_older_than_the_retention_are_deleted(user):
    old, recent = LoginFailure.objects.create(email="a@example.com"), LoginFailure.objects.create(email="b@example.com")
    LoginFailure.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert retention.login_failures_prune(older_than=timedelta(days=1)) == 1
    assert list(LoginFailure.objects.values_list("pk", flat=True)) == [recent.pk]


def test_refresh_tokens_expired_for_longer_than_the_retention_are_deleted(user, password):
    for _ in range(2):
        user_login(email=user.email, password=password, client_address="127.0.0.1")
    expired, live = RefreshToken.objects.order_by("created_at")
    RefreshToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=2))
    assert retention.refresh_tokens_prune(expired_for=timedelta(days=1)) == 1
    assert list(RefreshToken.objects.values_list("pk", flat=True)) == [live.pk]


def test_the_command_reports_and_keeps_the_throttling_window(capsys, settings):
    call_command("auth_prune")
    assert capsys.readouterr().out.strip() == (
        "pruned 0 login failures, 0 refresh tokens, 0 rate limit counters, 0 login addresses"
    )
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 7200
    with pytest.raises(CommandError, match="login window"):
        call_command("auth_prune", "--login-failures-older-than", "1")


def test_an_access_token_carries_the_users_email_for_receipts(user, password):
    from apps.core.tokens import access_token_verify

    tokens = user_login(email=user.email, password=password, client_address="127.0.0.1")
    assert access_token_verify(tokens.access_token).email == user.email


def test_login_addresses_not_used_within_the_known_days_are_deleted(user, password, settings):
    from apps.auth.models import LoginAddress

    user_login(email=user.email, password=password, client_address="10.0.0.1")
    user_login(email=user.email, password=password, client_address="10.0.0.2")
    LoginAddress.objects.filter(address="10.0.0.1").update(last_login_at=timezone.now() - timedelta(days=31))
    assert retention.login_addresses_prune(older_than=timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS)) == 1
    assert list(LoginAddress.objects.values_list("address", flat=True)) == ["10.0.0.2"]


def test_the_command_prunes_idle_rate_limit_counters_and_keeps_the_longest_limit(capsys, user, password):
    from apps.core.models import RateLimitCounter

    user_login(email=user.email, password=password, client_address="10.0.0.1")
    # The registration's bucket per email and the login's per address (a success clears the pauses).
    assert set(RateLimitCounter.objects.values_list("scope", flat=True)) == {"register:email", "login:address"}
    RateLimitCounter.objects.update(updated_at=timezone.now() - timedelta(hours=25))
    call_command("auth_prune")
    assert "2 rate limit counters" in capsys.readouterr().out
    assert not RateLimitCounter.objects.exists()
    with pytest.raises(CommandError, match="longest limit"):
        call_command("auth_prune", "--rate-limits-idle-for", "0.5")
