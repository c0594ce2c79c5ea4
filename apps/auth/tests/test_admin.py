"""The auth admin: every page renders, nothing is edited in place, and its actions are the services'."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User as StaffUser
from django.urls import reverse

from apps.auth import keys, services
from apps.auth.models import LoginAddress, LoginFailure, RefreshToken, ServiceClient, SigningKey, User

pytestmark = pytest.mark.django_db

MODELS = [User, RefreshToken, LoginAddress, ServiceClient, SigningKey, LoginFailure]


@pytest.fixture
def staff(client):
    client.force_login(StaffUser.objects.create_superuser("support", "support@example.com", "x" * 20))
    return client


@pytest.fixture
def rows(user, user_tokens):
    services.service_client_ensure(client_id="orders", secret="s" * 32, scopes=["payments:charge"])
    LoginFailure.objects.create(email=user.email, remote_addr="10.0.0.9")
    return user


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_each_page_lists_searches_and_shows_without_secrets(staff, rows, model):
    assert staff.get(url(model, "changelist"), {"q": "ada"}).status_code == 200
    instance = model.objects.first()
    page = staff.get(url(model, "change", instance.pk))
    assert page.status_code == 200
    text = page.content.decode()
    for secret in ("md5$", "pbkdf2_sha256$", RefreshToken.objects.first().token_hash):
        assert secret not in text


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_nothing_can_be_added_changed_or_deleted_in_place(staff, rows, model):
    instance = model.objects.first()
    assert staff.get(url(model, "add")).status_code == 403
    assert staff.post(url(model, "change", instance.pk), {}).status_code == 403
    assert staff.post(url(model, "delete", instance.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=instance.pk).exists()


def action(staff, model, name: str, pks) -> str:
    response = staff.post(url(model, "changelist"), {"action": name, "_selected_action": list(pks)}, follow=True)
    assert response.status_code == 200
    return " ".join(str(message) for message in response.context["messages"])


def test_the_active_signing_key_cannot_be_retired_through_the_admin(staff, db):
    active = keys.active_key().kid
    said = action(staff, SigningKey, "retire", [active])
    assert "this key signs new tokens" in said
    assert SigningKey.objects.get(kid=active).retired_at is None
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [active]


def test_an_old_signing_key_is_retired_through_the_admin(staff, settings):
    old = keys.active_key().kid
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings.AUTH_SIGNING_KEY = new_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keys.forget_active_key()
    new = keys.active_key().kid
    assert f"{old}: retired" in action(staff, SigningKey, "retire", [old])
    assert [jwk["kid"] for jwk in keys.jwks()["keys"]] == [new]


def test_revoking_families_through_the_admin_revokes_every_token_of_the_login(staff, user_tokens):
    services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    first = RefreshToken.objects.order_by("created_at", "id").first()
    assert "Revoked 2 refresh token(s) of 1 login(s)" in action(staff, RefreshToken, "revoke_families", [first.pk])
    assert set(RefreshToken.objects.values_list("revoked_reason", flat=True)) == {"admin"}


def test_deactivating_a_user_through_the_admin_keeps_them_out(staff, user, user_tokens, password):
    action(staff, User, "deactivate", [user.pk])
    assert User.objects.get(pk=user.pk).is_active is False
    with pytest.raises(services.InvalidRefreshToken):
        services.refresh_token_rotate(raw_token=user_tokens.refresh_token)
    with pytest.raises(services.InvalidCredentials):
        services.user_login(email=user.email, password=password, client_address="10.0.0.1")


def test_deactivating_a_client_through_the_admin_refuses_it_tokens(staff, db):
    services.service_client_ensure(client_id="orders", secret="s" * 32, scopes=[])
    action(staff, ServiceClient, "deactivate", [ServiceClient.objects.get().pk])
    with pytest.raises(services.InvalidClient):
        services.client_token_issue(client_id="orders", client_secret="s" * 32, client_address="10.0.0.1")
