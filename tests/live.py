"""Real service processes for end-to-end tests: gunicorn with the production config on 127.0.0.1.

Each service gets its own database (a SQLite file, or a PostgreSQL database of its own when the
suite's DATABASE_URL points at a PostgreSQL server), its migrations applied by `manage.py migrate`
exactly as a deployment runs them, and the environment the image gets in production (DEBUG off).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = REPO / "platform" / "gunicorn.conf.py"
BIN = Path(sys.executable).parent


# Ports for the servers tests start: chosen here, bound by the server a few seconds later. The kernel
# hands out ports of its ephemeral range (ip_local_port_range) to every outgoing connection and to
# every bind to port 0, so a port chosen there can be taken in between, by a connection's local end
# or by another process choosing the same way: the server then cannot bind it, or, worse, whoever
# holds it answers in its place. So ports come from below that range, each pytest-xdist worker (gwN)
# taking block N + 1 of PORT_BLOCK ports from PORT_BASE and other processes block 0, in turn from a
# random start, each checked free by binding it; Kubernetes' NodePort range (from 30000) is not used.
PORT_BASE, PORT_BLOCK, PORT_BLOCKS = 20000, 1000, 10
_ports_lock = threading.Lock()
_ports_taken = 0
_ports_start: int | None = None


@functools.cache
def _ephemeral_ports_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port of 127.0.0.1 no server holds and no other test process of the run is given."""
    global _ports_taken, _ports_start
    if _ephemeral_ports_low() < PORT_BASE + PORT_BLOCK * PORT_BLOCKS:  # no room below the range here
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) % (PORT_BLOCKS - 1) + 1 if worker[2:].isdigit() else 0
    with _ports_lock:
        if _ports_start is None:
            _ports_start = random.randrange(PORT_BLOCK)  # noqa: S311 (spreading, not security)
        for _ in range(PORT_BLOCK):
            port = PORT_BASE + block * PORT_BLOCK + (_ports_start + _ports_taken) % PORT_BLOCK
            _ports_taken += 1
            if _port_free(port):
                return port
    raise RuntimeError(f"no free port left in {PORT_BASE + block * PORT_BLOCK}-{PORT_BASE + (block + 1) * PORT_BLOCK}")


def write_signing_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


class Databases:
    """One database per service: SQLite files in a folder, or PostgreSQL databases created and dropped here."""

    def __init__(self, folder: Path, server_url: str | None = None):
        self.folder = folder
        self.server_url = server_url if server_url and server_url.startswith("postgres") else None
        self.created: list[str] = []
        self.suffix = uuid.uuid4().hex[:8]

    def url_for(self, service: str) -> str:
        if self.server_url is None:
            return f"sqlite:///{self.folder / f'{service}.sqlite3'}"
        import psycopg

        name = f"e2e_{service}_{self.suffix}"
        with psycopg.connect(self._admin_url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.server_url.rsplit("/", 1)[0] + f"/{name}"

    def _admin_url(self) -> str:
        return self.server_url.rsplit("/", 1)[0] + "/postgres"

    def drop_all(self) -> None:
        if self.server_url is None:
            return
        import psycopg

        with psycopg.connect(self._admin_url(), autocommit=True) as connection:
            for name in self.created:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LoggedProcess:
    """A child process whose output goes to a log file, stopped with SIGTERM as an orchestrator would."""

    process: subprocess.Popen | None = field(default=None, kw_only=True)
    log_path: Path | None = field(default=None, kw_only=True)

    def spawn(self, command: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, *, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


@dataclass
class LiveService(LoggedProcess):
    """One service as gunicorn serves it in production, on a free port of 127.0.0.1."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def process_env(self) -> dict[str, str]:
        return {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            **self.env,
            "SERVICE": self.name,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-{self.name}-{self.port}"),
            "DRAIN_FILE": str(self.workdir / f"{self.name}-{self.port}.draining"),
            "GUNICORN_WORKER_TMP_DIR": str(self.workdir),
        }

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=REPO,
            env={**self.process_env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed for {self.name}:\n{result.stdout}{result.stderr}")
        return result

    def start(self, *, timeout: float = 30.0) -> LiveService:
        self.spawn(
            [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONFIG)],
            env=self.process_env(),
            log_path=self.workdir / f"{self.name}-{self.port}.log",
        )
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_text()}")

    def workers(self) -> list[int]:
        """The pids of gunicorn's workers: its arbiter's child processes."""
        master = self.process.pid
        return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only query on this service's own database (`%s` placeholders), for assertions."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite"):
            import sqlite3

            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=20)) as connection:
                return connection.execute(query.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(url) as connection:
            return connection.execute(query, params).fetchall()


# Fast retries for tests: an event waits at most a second between attempts while its consumer is down.
RELAY_ARGS = ("--poll-interval", "0.1", "--backoff-base", "0.2", "--backoff-max", "1")
EMAIL_WORKER_ARGS = ("--poll-interval", "0.1", "--backoff-base", "0.2", "--backoff-max", "1")
BANNERS = {"outbox_relay": "outbox relay ", "email_deliver": "email worker "}


@dataclass
class LiveRelay(LoggedProcess):
    """A worker of a service (`manage.py outbox_relay`, or `email_deliver` for notifications), a
    separate process with the service's own environment (plus `extra_env`).

    SIGTERM lets it record the item in hand and release the rest of its batch, then it exits 0. It
    serves its /metrics on `metrics_url`, as the compose stack and the cluster scrape it.
    """

    service: LiveService
    args: tuple[str, ...] = RELAY_ARGS
    command: str = "outbox_relay"
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, *, wait: bool = True) -> LiveRelay:
        """Spawn the worker; with `wait`, return once it is running, so that a SIGTERM stops it as in
        production. Sent while Django is still loading, before the worker has installed its handler,
        SIGTERM kills it instead (exit -15)."""
        metrics = ("--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1")
        self.spawn(
            [sys.executable, str(REPO / "manage.py"), self.command, *self.args, *metrics],
            env={**self.service.process_env(), **self.extra_env},
            log_path=self.service.workdir / f"{self.service.name}-{self.command}-{uuid.uuid4().hex[:6]}.log",
        )
        if wait:
            self.wait_started()
        return self

    def wait_started(self, *, timeout: float = 30.0) -> None:
        """Until the worker has printed its first line (Django loaded, its SIGTERM handler installed,
        about to claim) and its /metrics server is listening; a worker that exits first (its metrics
        port taken, say) raises with its log."""
        deadline = time.monotonic() + timeout
        serving = f"metrics on 127.0.0.1:{self.metrics_port}/metrics"
        while BANNERS[self.command] not in (log := self.log_text()) or serving not in log:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay not started after {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)


@dataclass
class Stack:
    """The platform's services running together, wired to each other by URL and client credentials,
    with an outbox relay beside each service that emits events and the email worker beside
    notifications (`relays["notifications"]`)."""

    services: dict[str, LiveService]
    relays: dict[str, LiveRelay] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LiveService:
        return self.services[name]

    def events_undelivered(self) -> int:
        """Events waiting in the outboxes of the running services."""
        return sum(
            self[name].sql(f"SELECT count(*) FROM {table} WHERE delivered_at IS NULL")[0][0]  # noqa: S608
            for name, table in OUTBOX_TABLES.items()
            if name in self.services
        )

    def stop(self) -> None:
        for relay in self.relays.values():
            relay.stop()
        for service in self.services.values():
            service.stop()

    def diagnosis(self, *, log_lines: int = 40) -> str:
        """What a failed test needs to see of the stack: each worker's state and the end of its log,
        and every outbox event not delivered yet (with its attempts and the consumer's last answer)."""
        parts = []
        for name, relay in self.relays.items():
            state = "not started" if relay.process is None else f"exit code {relay.process.poll()}"
            tail = "\n".join(relay.log_text().splitlines()[-log_lines:])
            parts.append(f"--- {name} {relay.command} ({state}), last {log_lines} lines:\n{tail}")
        for name, table in OUTBOX_TABLES.items():
            if name not in self.services:
                continue
            try:  # a diagnosis must not hide the failure it explains
                now = self[name].sql("SELECT CURRENT_TIMESTAMP")[0][0]
                rows = self[name].sql(
                    f"SELECT id, type, attempts, last_status, claimed_by, available_at, created_at, "  # noqa: S608
                    f"failed_at, substr(last_error, 1, 200) FROM {table} WHERE delivered_at IS NULL "
                    "ORDER BY created_at DESC LIMIT 20"
                )
                listed = "\n".join(map(str, rows)) or "none"
            except Exception as error:
                now, listed = "?", f"not read: {error}"
            parts.append(f"--- {table}: events not delivered (newest 20; the database's time {now}):\n{listed}")
        return "\n".join(parts)


def email_worker(notifications: LiveService, **extra_env: str) -> LiveRelay:
    """notifications' `manage.py email_deliver`, with fast retries (and other EMAIL_* settings)."""
    return LiveRelay(notifications, args=EMAIL_WORKER_ARGS, command="email_deliver", extra_env=extra_env)


# Scopes of each service's OAuth2 client, as platform/local-setup.sh provisions them.
CLIENT_SCOPES = {
    "orders": ["payments:charge", "payments:refund", "notifications:publish"],
    "payments": ["notifications:publish"],
    "notifications": [],
}


# The endpoints auth limits per client address (RATE_LIMIT_<name>_PER_ADDRESS in apps/settings.py).
ADDRESS_LIMITED = ("REGISTER", "LOGIN", "REFRESH", "CLIENT_TOKEN")


# The services with an outbox, whose relays deliver to notifications, and their outbox tables.
RELAYED = ("orders", "payments")
OUTBOX_TABLES = {"orders": "orders_orderevent", "payments": "payments_paymentevent"}


def stack_start(
    workdir: Path, databases: Databases, names: tuple[str, ...], env: dict[str, dict[str, str]] | None = None
) -> Iterator[Stack]:
    """Migrate, provision clients and start the named services; stop them when the caller is done.

    `env` changes the environment of a service (by name) or of every one (key "all").
    """
    ports = {name: free_port() for name in ("auth", "orders", "payments", "notifications")}
    secrets_ = {name: uuid.uuid4().hex + uuid.uuid4().hex for name in CLIENT_SCOPES}
    common = {
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "APP_VERSION": "e2e",
        "GIT_SHA": "0000000",
        "DEPLOY_COLOR": "blue",
        "LOG_LEVEL": "INFO",
        # No mail relay here: emails are kept in the process's memory (recorded as sent).
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "DATA_DIR": str(workdir),
        **{f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
        # Every test, relay and service talks from 127.0.0.1: to the limits per client address the
        # whole suite is one client. Limits per account keep their production values, and
        # tests/e2e/test_rate_limits.py runs an auth of its own with limits per address.
        **{f"RATE_LIMIT_{name}_PER_ADDRESS": "100000/minute" for name in ADDRESS_LIMITED},
    }
    common["JWT_ISSUER"] = common["AUTH_URL"]
    signing_key = write_signing_key(workdir / "signing-key.pem")
    services = {}
    for name in names:
        service_env = {**common, "DATABASE_URL": databases.url_for(name)}
        if name == "auth":
            service_env["AUTH_SIGNING_KEY_FILE"] = str(signing_key)
        if name in secrets_:
            service_env["SERVICE_CLIENT_ID"] = name
            service_env["SERVICE_CLIENT_SECRET"] = secrets_[name]
        service_env |= (env or {}).get("all", {}) | (env or {}).get(name, {})
        services[name] = LiveService(name=name, env=service_env, workdir=workdir, port=ports[name])
    # Each service has its own database, so their migrations run side by side; so do the starts.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(services) or 1) as pool:
        list(pool.map(lambda service: service.manage("migrate", "--no-input", "-v", "0"), services.values()))
    if "auth" in services:
        for client_id, scopes in CLIENT_SCOPES.items():
            args = ["service_client_ensure", client_id, "--secret-env", "CLIENT_SECRET"]
            for scope in scopes:
                args += ["--scope", scope]
            services["auth"].manage(*args, extra_env={"CLIENT_SECRET": secrets_[client_id]})
    stack = Stack(services)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(services) or 1) as pool:
            list(pool.map(lambda service: service.start(), services.values()))
        for name in RELAYED:
            if name in services and "notifications" in services:
                stack.relays[name] = LiveRelay(services[name]).start(wait=False)
        if "notifications" in services:
            stack.relays["notifications"] = email_worker(services["notifications"]).start(wait=False)
        for relay in stack.relays.values():  # started side by side
            relay.wait_started()
        yield stack
    finally:
        stack.stop()
