"""Bad input and concurrent duplicates against the real auth process: clear 4xx, never a 500."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.client import PASSWORD, assert_problem

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"email": "a@example.com", "password": ', "application/json", 400),
        (b'{"email": 12, "password": ["x"]}', "application/json", 400),
        (b'{"email": "a@example.com", "password": "correct horse battery", "admin": true}', "application/json", 400),
        (b"[]", "application/json", 400),
        (b"\xff\xfe not utf-8", "application/json", 400),
        (b"email=a@example.com", "text/plain", 415),
        (b'{"email": "' + b"a" * 300_000 + b'@example.com"}', "application/json", 413),
    ],
    ids=["malformed-json", "wrong-types", "unknown-field", "array", "not-utf8", "wrong-content-type", "huge-body"],
)
def test_bad_register_bodies_are_clear_problems(stack, body, content_type, status):
    response = requests.post(
        f"{stack['auth'].url}/api/auth/register/", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert_problem(response, status)


def test_unknown_path_is_a_404_problem(stack):
    assert_problem(requests.get(f"{stack['orders'].url}/api/nothing-here/", timeout=5), 404)


def test_wrong_method_is_a_405_problem(stack):
    assert_problem(requests.delete(f"{stack['auth'].url}/api/auth/token/", timeout=5), 405)


def test_a_host_not_allowed_is_a_400_problem(stack):
    response = requests.get(f"{stack['auth'].url}/api/auth/me/", headers={"Host": "evil.example.com"}, timeout=5)
    assert_problem(response, 400)


def test_concurrent_registrations_of_one_email_create_one_user(stack):
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"

    def register(_):
        return requests.post(
            f"{stack['auth'].url}/api/auth/register/", json={"email": email, "password": PASSWORD}, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(register, range(8)))
    # One user; the next four are told the email is taken; past RATE_LIMIT_REGISTER_PER_EMAIL (5 an
    # hour, counted atomically) nobody may ask again whether it is.
    assert statuses == [201] + [409] * 4 + [429] * 3


def test_concurrent_refreshes_of_one_token_succeed_once(stack):
    url = stack["auth"].url
    email = f"refresh-{uuid.uuid4().hex[:10]}@example.com"
    requests.post(f"{url}/api/auth/register/", json={"email": email, "password": PASSWORD}, timeout=10)
    tokens = requests.post(f"{url}/api/auth/token/", json={"email": email, "password": PASSWORD}, timeout=10).json()

    def refresh(_):
        return requests.post(
            f"{url}/api/auth/token/refresh/", json={"refresh_token": tokens["refresh_token"]}, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(refresh, range(8)))
    assert statuses == [200] + [401] * 7
