"""The auth service's writes: registration, logins and their throttle, rotation, revocation, clients."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.exceptions import Throttled

from apps.auth import services
from apps.auth.models import LoginFailure, RefreshToken, ServiceClient, User
from apps.core.errors import Conflict
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
    pair = services.user_login(email="ADA@example.com", password=password, remote_addr="10.0.0.1")
    principal = access_token_verify(pair.access_token)
    assert principal.subject == str(user.id)
    assert principal.kind == "user"
    assert RefreshToken.objects.filter(user=user).count() == 1
    assert RefreshToken.objects.get(user=user).token_hash != pair.refresh_token  # only a hash is stored


def test_a_wrong_password_fails_and_is_recorded(user):
    with pytest.raises(services.InvalidCredentials):
        services.user_login(email=user.email, password="wrong password!", remote_addr="10.0.0.1")
    assert LoginFailure.objects.filter(email=user.email).count() == 1


def test_an_unknown_email_fails_the_same_way(db):
    with pytest.raises(services.InvalidCredentials, match="Invalid email or password"):
        services.user_login(email="nobody@example.com", password="whatever-it-is", remote_addr=None)


def test_logins_are_throttled_after_the_failure_limit_even_with_the_right_password(user, password, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        with pytest.raises(services.InvalidCredentials):
            services.user_login(email=user.email, password="wrong password!", remote_addr=None)
    with pytest.raises(Throttled) as throttled:
        services.user_login(email=user.email, password=password, remote_addr=None)
    assert 1 <= throttled.value.wait <= settings.LOGIN_FAILURE_WINDOW_SECONDS


def test_failures_older_than_the_window_do_not_count(user, password, settings):
    settings.LOGIN_FAILURE_LIMIT = 1
    failure = LoginFailure.objects.create(email=user.email)
    LoginFailure.objects.filter(pk=failure.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS + 1)
    )
    assert services.user_login(email=user.email, password=password, remote_addr=None).access_token


def test_a_successful_login_clears_the_failures(user, password):
    with pytest.raises(services.InvalidCredentials):
        services.user_login(email=user.email, password="wrong password!", remote_addr=None)
    services.user_login(email=user.email, password=password, remote_addr=None)
    assert not LoginFailure.objects.filter(email=user.email).exists()


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
    other_login = services.user_login(email=user.email, password=password, remote_addr=None)
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
