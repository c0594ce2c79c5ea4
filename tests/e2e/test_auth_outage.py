"""Auth hangs for longer than orders' key cache lives: token-verified reads on orders keep answering.

Orders reaches auth through a real TCP listener in this test. It forwards to the real auth, or, once
hung, accepts every connection, reads the request and never answers, as a wedged auth or a black
hole in the network does (a refused port would fail fast and hide the problem). The listener counts
every JWKS request it receives, answered or not.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.client import register_and_login
from tests.e2e.measurements import record
from tests.live import Databases, free_port, stack_start

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 2.0
ORDERS_ENV = {
    "JWKS_CACHE_SECONDS": str(CACHE_SECONDS),
    "JWKS_MIN_REFRESH_INTERVAL_SECONDS": "0.5",
    "JWKS_MAX_BACKOFF_SECONDS": "4",
    "JWKS_FETCH_TIMEOUT_SECONDS": "2",
}
HANG_SECONDS = 4 * CACHE_SECONDS
READERS = 4
READ_LIMIT_SECONDS = 1.0  # no read may wait out a refresh (one hung fetch takes 3 x 2 s and more)


class AuthLine:
    """A TCP listener between orders and auth: forwards, or hangs, and counts JWKS requests."""

    def __init__(self):
        self.port = free_port()
        self.target: tuple[str, int] | None = None
        self.hung = False
        self.jwks_requests = 0
        self.jwks_answered = 0
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._release = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = connection.recv(65536)
            if not chunk:
                connection.close()
                return
            request += chunk
        jwks = b" /.well-known/jwks.json " in request.split(b"\r\n", 1)[0]
        with self._lock:
            self.jwks_requests += jwks
            hang = self.hung
            if hang:
                self._held.append(connection)
        if hang:
            self._release.wait()  # never answered; the connection stays open until the test ends
            connection.close()
            return
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        forwarded = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.create_connection(self.target, timeout=10) as upstream:
            upstream.sendall(forwarded)
            while chunk := upstream.recv(65536):
                connection.sendall(chunk)
        with self._lock:
            self.jwks_answered += jwks
        connection.close()

    def hang(self) -> None:
        with self._lock:
            self.hung = True

    def recover(self) -> None:
        with self._lock:
            self.hung = False
        self._release.set()

    def close(self) -> None:
        self.recover()
        self._server.close()


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """auth and orders, orders reaching auth only through the line (its issuer stays auth's URL)."""
    workdir = tmp_path_factory.mktemp("auth-outage")
    line = AuthLine()
    databases = Databases(workdir, None)
    starting = stack_start(workdir, databases, ("auth", "orders"), env={"orders": {**ORDERS_ENV, "AUTH_URL": line.url}})
    stack = next(starting)
    line.target = ("127.0.0.1", stack["auth"].port)
    yield stack, line
    line.close()
    starting.close()


def read(url: str, token: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = requests.get(f"{url}/api/orders/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response.status_code, time.perf_counter() - started


def read_for(url: str, token: str, seconds: float) -> list[tuple[int, float]]:
    """Reads from READERS threads, back to back, for `seconds`."""
    deadline = time.monotonic() + seconds

    def reader(_):
        results = []
        while time.monotonic() < deadline:
            results.append(read(url, token))
        return results

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return [result for results in pool.map(reader, range(READERS)) for result in results]


FORGING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def random_kid_token(stack) -> str:
    """A token naming a kid auth never published: each one is a reason to refetch, unless spaced."""
    key = FORGING_KEY
    now = datetime.now(tz=UTC)
    claims = {"iss": stack["auth"].env["JWT_ISSUER"], "aud": "platform-api", "sub": str(uuid.uuid4())}
    claims |= {"iat": now, "exp": now + timedelta(minutes=5), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": uuid.uuid4().hex})


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def test_reads_keep_answering_while_auth_hangs_past_the_cache_lifetime(outage):
    stack, line = outage
    orders = stack["orders"].url
    _, tokens = register_and_login(stack["auth"].url)
    token = tokens["access_token"]

    before = read_for(orders, token, 2.0)  # warm: each worker fetches the keys once
    assert {status for status, _ in before} == {200}
    assert line.jwks_answered >= 1

    line.hang()
    hung_at = line.jwks_requests
    forged = [random_kid_token(stack) for _ in range(200)]
    deadline = time.monotonic() + HANG_SECONDS

    def forge_reads():
        results = []
        for forged_token in forged:
            if time.monotonic() > deadline:
                break
            results.append(read(orders, forged_token))
            time.sleep(HANG_SECONDS / len(forged))
        return results

    with ThreadPoolExecutor(max_workers=1) as pool:
        attack = pool.submit(forge_reads)
        during = read_for(orders, token, HANG_SECONDS)
        forged_results = attack.result()
    fetches_while_hung = line.jwks_requests - hung_at

    statuses = {status for status, _ in during}
    latencies = [seconds for _, seconds in during]
    record(
        "auth hung: token-verified reads on orders",
        f"cache lifetime {CACHE_SECONDS:g} s, auth hung {HANG_SECONDS:g} s; {len(during)} reads from {READERS} threads "
        f"and {len(forged_results)} reads with random kids; JWKS requests reaching the hung auth: {fetches_while_hung}",
    )
    record(
        "auth hung: token-verified reads on orders",
        f"before the hang ({len(before)} reads): {summary([s for _, s in before])}",
    )
    record("auth hung: token-verified reads on orders", f"while hung: {summary(latencies)}")
    record(
        "auth hung: token-verified reads on orders",
        f"random kids while hung: {summary([s for _, s in forged_results])}",
    )
    assert statuses == {200}
    assert max(latencies) < READ_LIMIT_SECONDS
    assert {status for status, _ in forged_results} == {401}
    assert max(seconds for _, seconds in forged_results) < READ_LIMIT_SECONDS  # forged kids hold no thread long
    # The cache did expire (the refresh was tried) and the tries are spaced: per worker (2) one
    # fetch at a time, each of at most 3 attempts, then a pause (0.5 s, 1 s, 2 s, 4 s). Without the
    # spacing, every read and every random kid would have been a fetch.
    assert 1 <= fetches_while_hung <= 2 * 3 * 4
    assert fetches_while_hung < len(during) / 20


def test_a_fresh_orders_process_verifies_from_the_kept_keys_while_auth_hangs(outage):
    stack, line = outage
    _, tokens = register_and_login(stack["auth"].url)
    line.hang()
    stack["orders"].stop()
    stack["orders"].start()  # no key in memory: every worker starts from the set kept in its database
    results = read_for(stack["orders"].url, tokens["access_token"], 3.0)
    record(
        "auth hung: token-verified reads on orders",
        f"a fresh orders process while hung: {summary([s for _, s in results])}",
    )
    assert {status for status, _ in results} == {200}
    assert max(seconds for _, seconds in results) < READ_LIMIT_SECONDS


def test_verification_refreshes_when_auth_answers_again(outage):
    stack, line = outage
    line.recover()
    answered = line.jwks_answered
    deadline = time.monotonic() + 15  # the longest backoff (4 s) plus a hung fetch's leftovers
    _, tokens = register_and_login(stack["auth"].url)
    while line.jwks_answered == answered and time.monotonic() < deadline:
        assert read(stack["orders"].url, tokens["access_token"])[0] == 200
        time.sleep(0.2)
    assert line.jwks_answered > answered
