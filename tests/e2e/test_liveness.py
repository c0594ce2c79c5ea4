"""Liveness needs no free request thread: a real gunicorn whose every thread is held by a client.

Four clients send a login request's headers and the first byte of its body, then nothing more: each
holds one of the worker's four threads, which waits for the rest of the body, as a slow upload or a
request waiting on a hung dependency does. Django's /healthz then cannot answer (no thread is free),
while the liveness port, answered by the worker's event loop, answers at once. When no request has
finished for LIVENESS_STALL_SECONDS it answers 503, and once the requests end it is 200 again.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.e2e.measurements import record
from tests.live import Databases, free_port, stack_start

pytestmark = pytest.mark.e2e

STALL_SECONDS = 3.0
THREADS = 4


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("liveness")
    liveness_port = free_port()
    environment = {
        "WEB_CONCURRENCY": "1",  # one worker: every probe reaches the one whose threads are held
        "GUNICORN_THREADS": str(THREADS),
        "LIVENESS_PORT": str(liveness_port),
        "LIVENESS_STALL_SECONDS": str(STALL_SECONDS),
    }
    starting = stack_start(workdir, Databases(workdir, None), ("auth",), env={"auth": environment})
    stack = next(starting)
    yield stack["auth"], f"http://127.0.0.1:{liveness_port}"
    starting.close()


def probe(url: str, timeout: float = 2.0) -> tuple[int | None, float, dict]:
    started = time.perf_counter()
    try:
        response = requests.get(url, timeout=timeout)
    except requests.Timeout:
        return None, time.perf_counter() - started, {}
    return response.status_code, time.perf_counter() - started, response.json()


def hold_a_thread(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 64\r\n\r\n{"
    )
    return sock


def test_liveness_answers_while_every_thread_is_busy_and_fails_only_when_they_stall(auth):
    service, liveness = auth
    assert probe(f"{liveness}/livez")[0] == 200
    assert requests.get(f"{service.url}/healthz", timeout=5).status_code == 200

    held = [hold_a_thread(service.port) for _ in range(THREADS)]
    try:
        time.sleep(0.5)  # the worker hands each to a thread, which waits for the body
        healthz = probe(f"{service.url}/healthz", timeout=1.5)
        busy = probe(f"{liveness}/livez")
        assert healthz[0] is None, "a thread was free: the test proves nothing"
        assert busy[0] == 200, busy
        assert busy[2]["in_flight"] >= THREADS
        assert busy[1] < 0.5, busy

        time.sleep(STALL_SECONDS)
        stalled = probe(f"{liveness}/livez")
        assert stalled[0] == 503, stalled
        assert stalled[2]["status"] == "stalled"
    finally:
        for sock in held:
            sock.close()  # the requests end: the threads read an empty body and answer

    deadline = time.monotonic() + 10
    recovered = probe(f"{liveness}/livez")
    while recovered[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        recovered = probe(f"{liveness}/livez")
    assert recovered[0] == 200, recovered
    assert requests.get(f"{service.url}/healthz", timeout=5).status_code == 200
    record(
        "liveness with every request thread held",
        f"/healthz on the request port: no answer within 1.5 s; the liveness port: {busy[0]} in "
        f"{busy[1] * 1000:.1f} ms while busy, {stalled[0]} after {STALL_SECONDS:.0f} s without progress, "
        f"{recovered[0]} once the requests ended",
    )


def test_a_probe_connection_that_sends_nothing_is_closed_and_the_listener_keeps_answering(auth):
    _, liveness = auth
    port = int(liveness.rsplit(":", 1)[1])
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        assert probe(f"{liveness}/livez")[0] == 200
        time.sleep(6)  # longer than the worker keeps a silent probe connection (5 s)
        for sock in silent:
            assert sock.recv(1) == b""  # closed by the worker, unanswered
    finally:
        for sock in silent:
            sock.close()
    assert probe(f"{liveness}/livez")[0] == 200
