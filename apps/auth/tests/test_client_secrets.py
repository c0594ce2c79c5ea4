"""Client secrets: a salted HMAC-SHA-256, older password-hasher hashes upgraded, a length floor."""

import os

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import CommandError, call_command

from apps.auth import services
from apps.auth.client_secrets import client_secret_check, client_secret_hash, client_secret_outdated
from apps.auth.models import ServiceClient

SECRET = "0123456789abcdef" * 4


def test_the_hash_is_salted_and_checks_only_its_secret():
    first, second = client_secret_hash(SECRET), client_secret_hash(SECRET)
    assert first.startswith("hmac-sha256$") and first != second
    assert SECRET not in first
    assert client_secret_check(SECRET, first) and client_secret_check(SECRET, second)
    assert not client_secret_check(SECRET[:-1] + "0", first)
    assert not client_secret_check("", first)


def test_an_unknown_client_never_matches():
    assert not client_secret_check(SECRET, None)
    assert not client_secret_check("", None)


def test_a_hash_the_password_hasher_wrote_still_verifies_and_is_rewritten_on_first_use(db):
    ServiceClient.objects.create(client_id="orders", secret_hash=make_password(SECRET), scopes="payments:charge")
    assert client_secret_outdated(ServiceClient.objects.get().secret_hash)

    assert services.client_token_issue(client_id="orders", client_secret=SECRET).access_token
    stored = ServiceClient.objects.get().secret_hash
    assert not client_secret_outdated(stored) and client_secret_check(SECRET, stored)
    assert services.client_token_issue(client_id="orders", client_secret=SECRET).access_token
    assert ServiceClient.objects.get().secret_hash == stored  # rewritten once, not on every request


def test_a_wrong_secret_leaves_an_older_hash_as_it_was(db):
    legacy = make_password(SECRET)
    ServiceClient.objects.create(client_id="orders", secret_hash=legacy)
    with pytest.raises(services.InvalidClient):
        services.client_token_issue(client_id="orders", client_secret="f" * 64)
    assert ServiceClient.objects.get().secret_hash == legacy


def test_provisioning_writes_the_new_form(db):
    services.service_client_ensure(client_id="orders", secret=SECRET, scopes=[])
    assert not client_secret_outdated(ServiceClient.objects.get().secret_hash)


@pytest.mark.parametrize(("length", "accepted"), [(31, False), (32, True)])
def test_the_command_refuses_a_secret_shorter_than_32_characters(db, monkeypatch, length, accepted):
    monkeypatch.setitem(os.environ, "TEST_CLIENT_SECRET", "x" * length)
    command = ["service_client_ensure", "orders", "--secret-env", "TEST_CLIENT_SECRET"]
    if accepted:
        call_command(*command)
        assert ServiceClient.objects.filter(client_id="orders").exists()
    else:
        with pytest.raises(CommandError, match="at least 32 characters"):
            call_command(*command)
        assert not ServiceClient.objects.exists()
