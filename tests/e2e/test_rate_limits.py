"""Rate limits hold under parallel requests against a real auth (gunicorn, 2 workers x 4 threads).

Clients reach auth through a trusted proxy (TRUSTED_PROXIES=127.0.0.1, X-Forwarded-For), as behind
the gateway, so each test plays clients at addresses of its own. Counts are exact: a limit that
counted and inserted separately would let parallel requests through together.
"""

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.client import PASSWORD, assert_problem
from tests.live import Databases, stack_start

pytestmark = pytest.mark.e2e

LIMITS = {
    "TRUSTED_PROXIES": "127.0.0.1",
    "RATE_LIMIT_LOGIN_PER_ADDRESS": "5/hour",
    "RATE_LIMIT_REGISTER_PER_ADDRESS": "5/hour",
    "RATE_LIMIT_REFRESH_PER_ADDRESS": "120/minute",
    "RATE_LIMIT_CLIENT_TOKEN_PER_ADDRESS": "10/hour",
    "LOGIN_FREE_ATTEMPTS_PER_ADDRESS": "3",
    "LOGIN_FREE_ATTEMPTS_PER_ACCOUNT": "4",
    "LOGIN_DELAY_BASE_SECONDS": "60",
}
PARALLEL = 16


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rate-limits")
    databases = Databases(workdir, os.environ.get("DATABASE_URL"))
    starting = stack_start(workdir, databases, ("auth",), env={"auth": LIMITS})
    try:
        yield next(starting)["auth"]
    finally:
        starting.close()
        databases.drop_all()


def address() -> str:
    """A client address of the documentation range, one per caller."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}"


def post(auth, path: str, body: dict, client: str) -> requests.Response:
    return requests.post(f"{auth.url}{path}", json=body, headers={"X-Forwarded-For": client}, timeout=60)


def in_parallel(call, arguments) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(call, arguments))


def statuses(responses) -> dict[int, int]:
    counted = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted


def assert_throttled(responses) -> None:
    for response in responses:
        if response.status_code == 429:
            body = assert_problem(response, 429, "throttled")
            assert int(response.headers["Retry-After"]) == body["retry_after"] >= 1


def register(auth, client: str) -> str:
    email = f"rate-{uuid.uuid4().hex[:12]}@example.com"
    response = post(auth, "/api/auth/register/", {"email": email, "password": PASSWORD}, client)
    assert response.status_code == 201, response.text
    return email


def test_parallel_guesses_from_one_address_get_exactly_the_free_attempts(auth):
    attacker = address()
    email = register(auth, address())
    responses = in_parallel(
        lambda _: post(auth, "/api/auth/token/", {"email": email, "password": "wrong guess!"}, attacker),
        range(PARALLEL),
    )
    assert statuses(responses) == {401: 3, 429: PARALLEL - 3}
    assert_throttled(responses)
    assert post(auth, "/api/auth/token/", {"email": email, "password": PASSWORD}, address()).status_code == 200


def test_parallel_guesses_from_many_addresses_slow_the_account_but_not_the_user_at_home(auth):
    home = address()
    email = register(auth, home)
    assert post(auth, "/api/auth/token/", {"email": email, "password": PASSWORD}, home).status_code == 200
    responses = in_parallel(
        lambda client: post(auth, "/api/auth/token/", {"email": email, "password": "wrong guess!"}, client),
        [address() for _ in range(PARALLEL)],
    )
    assert statuses(responses) == {401: 4, 429: PARALLEL - 4}
    assert_throttled(responses)
    assert post(auth, "/api/auth/token/", {"email": email, "password": PASSWORD}, home).status_code == 200


def test_parallel_logins_from_one_address_are_bounded_by_its_bucket(auth):
    client = address()
    responses = in_parallel(
        lambda _: post(
            auth, "/api/auth/token/", {"email": f"n-{uuid.uuid4().hex}@example.com", "password": "x" * 12}, client
        ),
        range(PARALLEL),
    )
    assert statuses(responses) == {401: 5, 429: PARALLEL - 5}
    assert_throttled(responses)


def test_parallel_registrations_from_one_address_create_exactly_the_bucket(auth):
    client = address()
    emails = [f"burst-{uuid.uuid4().hex[:12]}@example.com" for _ in range(PARALLEL)]
    responses = in_parallel(
        lambda email: post(auth, "/api/auth/register/", {"email": email, "password": PASSWORD}, client), emails
    )
    assert statuses(responses) == {201: 5, 429: PARALLEL - 5}
    assert_throttled(responses)
    created = [email for email in emails if auth.sql("SELECT 1 FROM identity_user WHERE email = %s", (email,))]
    assert len(created) == 5


def test_parallel_client_credentials_from_one_address_are_bounded(auth):
    client = address()
    body = {"grant_type": "client_credentials", "client_id": "orders", "client_secret": "not-the-secret-0123456789"}
    responses = in_parallel(lambda _: post(auth, "/api/auth/token/", body, client), range(PARALLEL))
    # The per-(address, client) pause binds first: three guesses, then every one waits its turn.
    assert statuses(responses) == {401: 3, 429: PARALLEL - 3}
    assert_throttled(responses)


def test_a_forged_forwarded_header_from_an_untrusted_peer_is_not_believed(auth):
    """Only 127.0.0.1 is trusted: a hop a client adds left of its own address is not its address."""
    real = address()
    for _ in range(3):
        forged = f"{address()}, {real}"
        assert (
            post(auth, "/api/auth/token/", {"email": "x@example.com", "password": "wrong"}, forged).status_code == 401
        )
    assert_problem(post(auth, "/api/auth/token/", {"email": "x@example.com", "password": "wrong"}, real), 429)
