"""The auth service's writes: registration, logins and their throttle, rotation, revocation, clients."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.exceptions import Throttled

from apps.auth import services
from apps.auth.models import LoginFailure, RefreshToken, ServiceClient, User
from apps.core.errors import Conflict
from apps.core.rates import Rate
from apps.core.testing import ManualClock
from apps.core.tokens import access_token_verify

pytestmark = pytest.mark.django_db


def test_register_stores_a_lowercased_email_and_a_password_hash(password):
    user = services.user_register(email="  Ada@Example.COM ", password=password)
    stored = User.objects.get(pk=user.pk)
    assert stored.email == "ada@example.com"
    assert stored.password != password
    assert stored.password.startswith("md5$")  # the test settings' hasher; production uses PBKDF2


def test_register_refuses_a_taken_email_in_any_case(user, password):
    with pytest.raises(Conflict):
        services.user_register(email="ADA@example.com", password=password)
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("8675309012", "This password is entirely numeric."),
    ],
)
def test_register_applies_djangos_password_validators(password, reason):
    with pytest.raises(ValidationError) as error:
        services.user_register(email="new@example.com", password=password)
    assert reason in error.value.message_dict["password"]
    assert not User.objects.exists()


def test_login_issues_a_verifiable_access_token_and_a_refresh_token(user, password):
    pair = services.user_login(email="ADA@example.com", password=password, client_address="10.0.0.1")
    principal = access_token_verify(pair.access_token)
    assert principal.subject == str(user.id)
    assert principal.kind == "user"
    assert RefreshToken.objects.filter(user=user).count() == 1
    assert RefreshToken.objects.get(user=user).token_hash != pair.refresh_token  # only a hash is stored


def test_a_wrong_password_fails_and_is_recorded(user):
    with pytest.raises(services.InvalidCredentials):
        services.user_login(email=user.email, password="wrong password!", client_address="10.0.0.1")
    assert list(LoginFailure.objects.values_list("email", "remote_addr")) == [(user.email, "10.0.0.1")]


def test_an_unknown_email_fails_the_same_way_and_is_recorded(db):
    with pytest.raises(services.InvalidCredentials) as refused:
        services.user_login(email="nobody@example.com", password="whatever-it-is", client_address="10.0.0.1")
    assert (refused.value.status_code, str(refused.value.detail)) == (401, "Invalid email or password.")
    assert list(LoginFailure.objects.values_list("email", flat=True)) == ["nobody@example.com"]


@pytest.fixture
def clock(monkeypatch):
    fake = ManualClock()
    monkeypatch.setattr("apps.core.ratelimit.timezone.now", fake)
    monkeypatch.setattr("apps.auth.services.timezone.now", fake)
    return fake


@pytest.fixture
def throttle(settings):
    """Small numbers, so a test shows the policy in a few attempts."""
    settings.LOGIN_FREE_ATTEMPTS_PER_ADDRESS = 3
    settings.LOGIN_FREE_ATTEMPTS_PER_ACCOUNT = 6
    settings.LOGIN_DELAY_BASE_SECONDS = 2
    settings.LOGIN_DELAY_MAX_SECONDS = 16
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 3600
    return settings


def login(email, password, address):
    return services.user_login(email=email, password=password, client_address=address)


def guess(email, address):
    with pytest.raises(services.InvalidCredentials):
        login(email, "wrong password!", address)


def test_guesses_from_one_address_wait_twice_as_long_each_time(user, password, clock, throttle):
    for _ in range(3):
        guess(user.email, "10.0.0.66")
    waits = []
    for _ in range(4):
        with pytest.raises(Throttled) as throttled:
            login(user.email, "wrong password!", "10.0.0.66")
        waits.append(throttled.value.wait)
        clock.advance(throttled.value.wait)
        guess(user.email, "10.0.0.66")
    assert waits == [2, 4, 8, 16]
    with pytest.raises(Throttled) as capped:
        login(user.email, password, "10.0.0.66")  # the right password waits its turn as well
    assert capped.value.wait == 16


def test_guesses_from_one_address_do_not_slow_the_user_elsewhere(user, password, clock, throttle):
    for _ in range(3):
        guess(user.email, "10.0.0.66")
    with pytest.raises(Throttled):
        login(user.email, password, "10.0.0.66")
    assert login(user.email, password, "10.0.0.1").access_token


def test_guesses_from_many_addresses_slow_the_account_but_not_from_an_address_it_logged_in_from(
    user, password, clock, throttle
):
    login(user.email, password, "10.0.0.1")  # the user's usual address
    for index in range(6):
        guess(user.email, f"10.1.0.{index}")
    with pytest.raises(Throttled) as throttled:
        login(user.email, "wrong password!", "10.1.0.99")  # a new address: the account's pause applies
    assert throttled.value.wait == 2
    assert login(user.email, password, "10.0.0.1").access_token  # never kept out where they log in


def test_a_user_on_a_new_address_waits_out_the_pause_and_is_never_locked_out(user, password, clock, throttle):
    for index in range(12):
        clock.advance(16)
        guess(user.email, f"10.1.0.{index}")
    with pytest.raises(Throttled) as throttled:
        login(user.email, password, "192.0.2.7")
    assert throttled.value.wait == 16  # capped: the pause never grows past LOGIN_DELAY_MAX_SECONDS
    clock.advance(16)
    assert login(user.email, password, "192.0.2.7").access_token


def test_a_correct_password_resets_the_pauses(user, password, clock, throttle):
    for _ in range(3):
        guess(user.email, "10.0.0.1")
    clock.advance(2)
    login(user.email, password, "10.0.0.1")
    for _ in range(3):  # three free guesses again, none refused
        guess(user.email, "10.0.0.1")


def test_attempts_are_forgotten_after_the_window_without_one(user, password, clock, throttle):
    for _ in range(3):
        guess(user.email, "10.0.0.66")
    clock.advance(3601)
    for _ in range(3):
        guess(user.email, "10.0.0.66")


def test_logins_from_one_address_are_limited_by_a_bucket(user, password, settings):
    settings.RATE_LIMIT_LOGIN_PER_ADDRESS = Rate(count=2, period=60)
    login(user.email, password, "10.0.0.1")
    login(user.email, password, "10.0.0.1")
    with pytest.raises(Throttled) as throttled:
        login(user.email, password, "10.0.0.1")
    assert throttled.value.wait == 30  # one request back every 60 / 2 s
    assert login(user.email, password, "10.0.0.2").access_token


def test_registrations_are_limited_per_address_and_per_email(db, password, settings):
    settings.RATE_LIMIT_REGISTER_PER_ADDRESS = Rate(count=2, period=3600)
    settings.RATE_LIMIT_REGISTER_PER_EMAIL = Rate(count=2, period=3600)
    services.user_register(email="a@example.com", password=password, client_address="10.0.0.1")
    services.user_register(email="b@example.com", password=password, client_address="10.0.0.1")
    with pytest.raises(Throttled):
        services.user_register(email="c@example.com", password=password, client_address="10.0.0.1")
    with pytest.raises(Conflict):
        services.user_register(email="a@example.com", password=password, client_address="10.0.0.2")
    with pytest.raises(Throttled):  # asking again whether an email is taken
        services.user_register(email="a@example.com", password=password, client_address="10.0.0.3")
    assert sorted(User.objects.values_list("email", flat=True)) == ["a@example.com", "b@example.com"]


def test_refreshes_are_limited_per_user(user, password, settings):
    settings.RATE_LIMIT_REFRESH_PER_USER = Rate(count=2, period=60)
    pair = login(user.email, password, "10.0.0.1")
    for _ in range(2):
        pair = services.refresh_token_rotate(raw_token=pair.refresh_token, client_address="10.0.0.1")
    with pytest.raises(Throttled):
        services.refresh_token_rotate(raw_token=pair.refresh_token, client_address="10.0.0.2")
    assert RefreshToken.objects.get(token_hash=services._token_hash(pair.refresh_token)).used_at is None


def test_client_secret_guesses_slow_down_and_the_right_secret_resets_them(db, clock, throttle):
    services.service_client_ensure(client_id="orders", secret="s" * 32, scopes=[])
    for _ in range(3):
        with pytest.raises(services.InvalidClient):
            services.client_token_issue(client_id="orders", client_secret="w" * 32, client_address="10.0.0.66")
    with pytest.raises(Throttled):
        services.client_token_issue(client_id="orders", client_secret="s" * 32, client_address="10.0.0.66")
    assert services.client_token_issue(client_id="orders", client_secret="s" * 32, client_address="10.0.0.5")


def test_rotation_marks_the_token_used_and_continues_the_family(user_tokens):
    new_pair = services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    tokens = list(RefreshToken.objects.order_by("created_at", "id"))
    assert len(tokens) == 2
    assert tokens[0].used_at is not None
    assert tokens[1].family == tokens[0].family
    assert new_pair.refresh_token != user_tokens.refresh_token


def test_reuse_revokes_every_token_of_the_family(user_tokens):
    services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    with pytest.raises(services.InvalidRefreshToken, match="already used"):
        services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    assert set(RefreshToken.objects.values_list("revoked_reason", flat=True)) == {"reuse"}


def test_reuse_leaves_other_logins_of_the_user_alone(user, user_tokens, password):
    other_login = services.user_login(email=user.email, password=password, client_address="10.0.0.1")
    services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    with pytest.raises(services.InvalidRefreshToken):
        services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    assert services.refresh_token_rotate(raw_token=other_login.refresh_token).access_token


def test_an_expired_refresh_token_is_refused(user_tokens):
    RefreshToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.InvalidRefreshToken):
        services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    assert RefreshToken.objects.get().used_at is None


def test_an_unknown_refresh_token_is_refused(db):
    with pytest.raises(services.InvalidRefreshToken):
        services.refresh_token_rotate(raw_token="never-issued")


def test_logout_revokes_the_family_and_ignores_unknown_tokens(user_tokens):
    services.refresh_token_revoke(raw_token=user_tokens.refresh_token)
    services.refresh_token_revoke(raw_token="never-issued")
    assert RefreshToken.objects.get().revoked_reason == "logout"
    with pytest.raises(services.InvalidRefreshToken):
        services.refresh_token_rotate(raw_token=user_tokens.refresh_token)


def test_client_credentials_issue_a_service_token_with_the_clients_scopes(db):
    services.service_client_ensure(client_id="orders", secret="s" * 32, scopes=["payments:charge", "b:c"])
    pair = services.client_token_issue(client_id="orders", client_secret="s" * 32)
    principal = access_token_verify(pair.access_token)
    assert principal.subject == "orders"
    assert principal.kind == "service"
    assert principal.scopes == frozenset({"payments:charge", "b:c"})
    assert pair.refresh_token is None


@pytest.mark.parametrize(("client_id", "secret"), [("orders", "wrong-secret-xxxxxxxx"), ("nobody", "s" * 32)])
def test_client_credentials_refuse_a_wrong_secret_or_client(db, client_id, secret):
    services.service_client_ensure(client_id="orders", secret="s" * 32, scopes=[])
    with pytest.raises(services.InvalidClient):
        services.client_token_issue(client_id=client_id, client_secret=secret)


def test_service_client_ensure_is_idempotent_and_updates_secret_and_scopes(db):
    services.service_client_ensure(client_id="orders", secret="a" * 32, scopes=["x"])
    services.service_client_ensure(client_id="orders", secret="b" * 32, scopes=["y", "z"])
    client = ServiceClient.objects.get()
    assert client.scopes == "y z"
    assert services.client_token_issue(client_id="orders", client_secret="b" * 32).access_token


def test_an_email_has_one_spelling_whatever_its_unicode_form(db, password):
    services.user_register(email="Ada@Example.com", password=password)
    with pytest.raises(Conflict):
        services.user_register(email="\uff21da@\uff25xample.com", password=password)  # fullwidth A and E


def _counts() -> list[float]:
    return [
        services.LOGINS.labels(outcome="succeeded")._value.get(),
        services.LOGINS.labels(outcome="invalid_credentials")._value.get(),
        services.TOKENS_ISSUED.labels(grant="password")._value.get(),
        services.TOKENS_ISSUED.labels(grant="refresh_token")._value.get(),
        services.REFRESH_TOKEN_REUSES._value.get(),
    ]


def test_logins_tokens_and_a_replayed_refresh_token_are_counted(user, password, django_capture_on_commit_callbacks):
    before = _counts()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(services.InvalidCredentials):
            services.user_login(email=user.email, password="wrong password!", client_address="10.0.0.1")
        pair = services.user_login(email=user.email, password=password, client_address="10.0.0.1")
        services.refresh_token_rotate(raw_token=pair.refresh_token)
        with pytest.raises(services.InvalidRefreshToken):
            services.refresh_token_rotate(raw_token=pair.refresh_token)  # used twice: the login is revoked
    assert [b - a for a, b in zip(before, _counts(), strict=True)] == [1, 1, 1, 1, 1]
