"""The application loaded once, in gunicorn's arbiter, before it forks the workers
(platform/gunicorn.conf.py, `preload_app`): a real auth on its database (SQLite, or PostgreSQL when
DATABASE_URL names one), served by two workers.

What it shows: the application is prepared once per server, not once per worker, and a worker
killed is replaced by a fork that does not load it again; the arbiter holds neither a database
connection nor the database file when it forks (each worker opens its own); and with
GUNICORN_PRELOAD=false every worker loads the application itself, as before.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.client import register_and_login
from tests.e2e.flows import wait_for
from tests.live import Databases, LiveService, stack_start

pytestmark = pytest.mark.e2e

PREPARED = "application prepared"


def started(tmp_path_factory, name: str, preload: str):
    workdir = tmp_path_factory.mktemp(name)
    databases = Databases(workdir, os.environ.get("DATABASE_URL"))
    starting = stack_start(workdir, databases, ("auth",), env={"auth": {"GUNICORN_PRELOAD": preload}})
    return starting, databases


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    starting, databases = started(tmp_path_factory, "preloaded", "true")
    try:
        yield next(starting)["auth"]
    finally:
        starting.close()
        databases.drop_all()


def prepared_by(service: LiveService) -> list[int]:
    """The pid of each process that logged it prepared the application."""
    return [
        entry["pid"]
        for entry in (json.loads(line) for line in service.log_text().splitlines() if line.startswith("{"))
        if entry.get("message") == PREPARED
    ]


def database_handles(pid: int, service: LiveService) -> list[str]:
    """What of `pid`'s open files and sockets is its database: the SQLite file, or a TCP connection
    to the PostgreSQL server's port."""
    url = service.env["DATABASE_URL"]
    descriptors = []
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            descriptors.append(os.readlink(descriptor))
        except FileNotFoundError:
            continue  # closed while listed
    if url.startswith("sqlite"):
        return [target for target in descriptors if target.startswith(url.removeprefix("sqlite:///"))]
    port = urlsplit(url).port or 5432
    sockets = {target[8:-1] for target in descriptors if target.startswith("socket:[")}
    connected = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, state, inode = int(fields[2].split(":")[1], 16), fields[3], fields[9]
            if state == "01" and remote_port == port and inode in sockets:  # 01: ESTABLISHED
                connected.append(f"tcp to :{port}")
    return connected


def booted(service: LiveService) -> list[int]:
    """Its workers, once both have booted and the arbiter's line about preparing is written (lines
    below WARNING are written a moment after they are logged, apps.core.logging.StdoutHandler)."""
    wait_for(lambda: len(service.workers()) == 2 and service.log_text().count("Booting worker") >= 2, timeout=30)
    wait_for(lambda: prepared_by(service), timeout=10)
    return service.workers()


def test_the_application_is_prepared_once_and_a_killed_worker_is_forked_without_loading_it(auth):
    before = booted(auth)
    assert prepared_by(auth) == [auth.process.pid], auth.log_text()
    os.kill(before[0], signal.SIGKILL)
    [replacement] = wait_for(lambda: list(set(auth.workers()) - set(before)), timeout=30)

    def served_by_the_replacement() -> bool:
        """A request served by the new worker, its access line written: any line it logged before,
        as it started, is written by then (a process writes its lines in order)."""
        register_and_login(auth.url)  # a new connection, to either worker
        return any(
            entry.get("logger") == "apps.access" and entry.get("pid") == replacement
            for entry in (json.loads(line) for line in auth.log_text().splitlines() if line.startswith("{"))
        )

    wait_for(served_by_the_replacement, timeout=30, interval=0.2)
    assert prepared_by(auth) == [auth.process.pid], auth.log_text()


def test_the_arbiter_forks_holding_no_database_connection_and_each_worker_opens_its_own(auth):
    register_and_login(auth.url)
    for worker in booted(auth):  # both workers serve and keep their connections (CONN_MAX_AGE)
        deadline = time.monotonic() + 30
        while not database_handles(worker, auth):
            assert time.monotonic() < deadline, f"worker {worker} never opened its database"
            requests.get(f"{auth.url}/readyz", headers={"Connection": "close"}, timeout=10)
    assert database_handles(auth.process.pid, auth) == []


def test_turned_off_every_worker_loads_the_application_itself(tmp_path_factory):
    starting, databases = started(tmp_path_factory, "in-each-worker", "false")
    try:
        service = next(starting)["auth"]
        workers = booted(service)
        wait_for(lambda: len(prepared_by(service)) == 2, timeout=30)
        assert sorted(prepared_by(service)) == sorted(workers)
        register_and_login(service.url)
    finally:
        starting.close()
        databases.drop_all()
