"""platform/gunicorn.conf.py as gunicorn itself reads it, and its timeouts against the service client's.

gunicorn's `--print-config` loads the file the way the image's command does and prints every
setting, so these tests see the values gunicorn will use, not what the file seems to say.
"""

import collections
import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.live import free_port
from tests.platform.dockerfile import REPO

GUNICORN = Path(sys.executable).parent / "gunicorn"
CONFIG = REPO / "platform" / "gunicorn.conf.py"


def print_config(environment: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [str(GUNICORN), "-c", str(CONFIG), "--print-config"],
        cwd=REPO,
        env={"PATH": f"{GUNICORN.parent}:/usr/bin:/bin", "SERVICE": "auth", **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    values = {}
    for line in result.stdout.splitlines():
        name, separator, value = line.partition(" = ")
        if separator:
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def defaults() -> dict[str, str]:
    return print_config({})


def test_worker_class_is_threaded_for_io_bound_services(defaults):
    from gunicorn.workers.gthread import ThreadWorker

    from apps.core.gunicorn_worker import ThreadWorker as PlatformThreadWorker

    assert (defaults["worker_class"], defaults["workers"], defaults["threads"]) == (
        "apps.core.gunicorn_worker.ThreadWorker",
        "2",
        "4",
    )
    assert issubclass(PlatformThreadWorker, ThreadWorker)


def test_binds_all_interfaces_on_port_8000_by_default(defaults):
    assert defaults["bind"] == "['0.0.0.0:8000']"


def test_a_liveness_port_adds_the_listener_the_workers_answer_probes_on():
    assert print_config({"LIVENESS_PORT": "8081"})["bind"] == "['0.0.0.0:8000', '0.0.0.0:8081']"


def test_serves_the_django_wsgi_application(defaults):
    assert defaults["wsgi_app"] == "apps.wsgi:application"


def test_timeouts(defaults):
    assert (defaults["timeout"], defaults["graceful_timeout"], defaults["keepalive"]) == ("30", "30", "75")


def test_workers_are_recycled_with_jitter(defaults):
    assert (defaults["max_requests"], defaults["max_requests_jitter"]) == ("100000", "10000")


def test_the_app_is_loaded_once_before_the_fork_unless_turned_off(defaults):
    assert defaults["preload_app"] == "True"
    assert print_config({"GUNICORN_PRELOAD": "false"})["preload_app"] == "False"


def test_gunicorn_writes_no_access_log_of_its_own(defaults):
    assert defaults["accesslog"] == "None"


def test_gunicorn_does_no_access_log_work_per_request(defaults):
    """With a logging configuration given, gunicorn's own logger counts its access log as on and
    builds each request's entry for a logger with no handler; the platform's logger does nothing."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger as GunicornLogger

    from apps.core.gunicorn_worker import Logger

    assert defaults["logger_class"] == "apps.core.gunicorn_worker.Logger"
    config = Config()
    config.set("accesslog", "-")  # on, as a logging configuration turns it on, without configuring logging here
    assert GunicornLogger(config).access_log_enabled
    built = []
    logger = Logger(config)
    logger.atoms = lambda *arguments: built.append(arguments) or {}
    logger.access(object(), object(), {}, None)
    assert built == []


def test_control_socket_is_off(defaults):
    assert defaults["control_socket_disable"] == "True"


def test_sizes_come_from_the_environment():
    values = print_config(
        {
            "PORT": "9100",
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "3",
            "GUNICORN_THREADS": "8",
            "GUNICORN_TIMEOUT": "40",
            "GUNICORN_GRACEFUL_TIMEOUT": "45",
            "GUNICORN_KEEPALIVE": "2",
            "GUNICORN_WORKER_TMP_DIR": "/run/heartbeat",
        }
    )
    names = ("bind", "workers", "threads", "timeout", "graceful_timeout", "keepalive", "worker_tmp_dir")
    assert [values[name] for name in names] == ["['127.0.0.1:9100']", "3", "8", "40", "45", "2", "/run/heartbeat"]


def _one_call_budget(*, connect: float, read: float, retries: int, backoff_factor: float = 0.2) -> float:
    """Longest time apps.core.service_calls.call can take once it has a bulkhead slot: every attempt
    times out, with urllib3's backoff.

    urllib3 sleeps before each retry: nothing after the first failure, then factor x 2^(failures - 1).
    """
    attempts = retries + 1
    backoff = sum(backoff_factor * 2 ** (failures - 1) for failures in range(2, attempts))
    return attempts * (connect + read) + backoff


def test_one_service_call_budget_with_the_default_settings():
    budget = _one_call_budget(
        connect=settings.SERVICE_CALL_CONNECT_TIMEOUT,
        read=settings.SERVICE_CALL_READ_TIMEOUT,
        retries=settings.SERVICE_CALL_RETRIES,
    )
    assert round(settings.SERVICE_CALL_BULKHEAD_WAIT_SECONDS + budget, 1) == 18.5


def test_graceful_timeout_outlasts_a_token_fetch_and_a_retried_call(defaults):
    connect, read, retries = (
        settings.SERVICE_CALL_CONNECT_TIMEOUT,
        settings.SERVICE_CALL_READ_TIMEOUT,
        settings.SERVICE_CALL_RETRIES,
    )
    # the token request is a POST without an idempotency key: only failed connects are retried
    wait = settings.SERVICE_CALL_BULKHEAD_WAIT_SECONDS  # for a slot, before each of the two calls
    token_fetch = wait + (retries + 1) * connect + read + _one_call_budget(connect=0, read=0, retries=retries)
    slowest_request = token_fetch + wait + _one_call_budget(connect=connect, read=read, retries=retries)
    assert slowest_request < int(defaults["graceful_timeout"])


@pytest.fixture
def bare_server(tmp_path, request):
    """perf/bare (one JSON view, no database) served by gunicorn with the platform's configuration:
    2 workers of 2 threads, and more environment when parametrized with it. Yields its port and its
    master process."""
    port = free_port()
    env = {
        "PATH": f"{GUNICORN.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "perf.bare.settings",
        "SERVICE": "bare",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "DRAIN_FILE": str(tmp_path / "draining"),
        "GUNICORN_WORKER_TMP_DIR": str(tmp_path),
        **getattr(request, "param", {}),
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(GUNICORN), "-c", str(CONFIG), "perf.bare.wsgi:application"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while len(workers_of(process.pid)) < 2 or log.read_text().count("Booting worker") < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1)  # both workers past their imports and waiting on the socket
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def workers_of(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def holder_of_each(port: int, clients: list[socket.socket], pids: list[int]) -> list[int]:
    """Which process holds the server's end of each client connection, read from /proc."""
    inode_of_client_port = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local_port == port:
            inode_of_client_port[remote_port] = fields[9]
    pid_of_inode = {}
    for pid in pids:
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                pid_of_inode[target[8:-1]] = pid
    return [pid_of_inode.get(inode_of_client_port.get(client.getsockname()[1], ""), 0) for client in clients]


def scheduled_first(pids: list[int]) -> None:
    """Every thread of these processes ahead of the rest of the machine's (nice -10), where the
    kernel allows it: under the suite's other tests a worker can wait longer to be scheduled than
    the other worker yields to it, and what is measured is then the machine, not the workers."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), -10)


def test_a_burst_of_new_connections_is_shared_between_the_workers(bare_server):
    """16 connections at once, as a proxy opening its pool or a load test's users make them, three
    times: each time both workers take about half (apps/core/gunicorn_worker.py). gthread's own race
    for accept() gave most or all of a burst to one worker, which then served it with one GIL while
    the other idled."""
    port, master = bare_server
    scheduled_first(workers_of(master.pid))
    splits = []
    for _burst in range(3):
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
        try:
            for client in clients:
                client.sendall(b"GET /bare/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            for client in clients:
                assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
            workers = workers_of(master.pid)
            held = collections.Counter(holder_of_each(port, clients, workers))
            splits.append(sorted(held.get(worker, 0) for worker in workers))
        finally:
            for client in clients:
                client.close()
    assert all(len(split) == 2 and sum(split) == 16 for split in splits), splits
    assert all(split[0] >= 6 for split in splits), splits


def answers_on_one_connection(port: int, count: int) -> list[tuple[int, bool]]:
    """Each answer's status and whether it closes the connection, to `count` requests sent one after
    the other on one kept-alive connection, until an answer closes it; the server then sends nothing
    more and closes its end."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        for _ in range(count):
            client.sendall(b"GET /bare/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = http.client.HTTPResponse(client)
            response.begin()
            response.read()
            answers.append((response.status, response.will_close))
            if response.will_close:
                assert client.recv(1) == b""  # closed by the server, nothing answered after
                break
    return answers


@pytest.mark.parametrize("bare_server", [{"CONNECTION_MAX_REQUESTS": "5"}], indirect=True)
def test_a_kept_alive_connection_is_closed_after_its_fifth_answer_when_so_configured(bare_server):
    """apps/core/gunicorn_worker.py: the client connects again, and the new connection goes to the
    least busy worker, so a worker replaced by max_requests gets its share back."""
    port, _ = bare_server
    answers = answers_on_one_connection(port, 8)
    assert answers == [(200, False)] * 4 + [(200, True)]


def test_by_default_a_kept_alive_connection_carries_a_thousand_requests(bare_server):
    port, _ = bare_server
    answers = answers_on_one_connection(port, 1001)
    assert len(answers) == 1000
    assert [closing for _, closing in answers] == [False] * 999 + [True]
