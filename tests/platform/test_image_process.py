"""The image's command as a real process: what the container runs, run here on 127.0.0.1.

Everything is read from the files that define the image: the code is what the Dockerfile's COPY
lines take from the build context .dockerignore admits, laid out as in the image's WORKDIR; static
files are collected by the Dockerfile's own build step; the server runs the Dockerfile's CMD with
its ENV; the migration and service-client steps are platform/compose.yaml's commands. It serves
the auth service, whose token endpoint reads a request body, which the drain test needs.

Where the machine allows it (root, as in CI), the server runs as in a container: in a private mount
namespace whose root filesystem is read-only, with a fresh tmpfs on /tmp and the data folder mounted
writable as a volume would be, using the image's default /tmp paths. Elsewhere the writable paths
are moved into a temporary folder instead. What differs from the image is only where things live
(the venv is .venv, not /opt/venv; the WORKDIR is a temporary folder, not /app) and the database
(SQLite, not PostgreSQL).
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.platform import compose, dockerfile, observability

VENV_BIN = Path(sys.executable).parent
RUNTIME = dockerfile.stages()[-1]
IMAGE_COMMAND = RUNTIME.exec_form("CMD")
CLIENT_SECRET = "platform-test-client-secret-0123456789"
GRACEFUL_TIMEOUT = 30  # platform/gunicorn.conf.py's default; test_gunicorn_config.py pins it

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_only_root_script() -> str:
    """A container's filesystem: the root read-only, /tmp a fresh tmpfs, DATA_DIR writable like a volume.

    The image has its venv in /opt/venv; here it is the repository's .venv, which a checkout under /tmp
    would lose under the fresh tmpfs. Such a venv is parked on a bind mount and moved back on top.
    """
    venv = shlex.quote(str(VENV_BIN.parent))
    keep_venv = VENV_BIN.parent.is_relative_to("/tmp")  # noqa: S108
    script = 'mount --bind "$DATA_DIR" "$DATA_DIR"; '
    if keep_venv:
        script += f'mkdir -p "$DATA_DIR/.venv-parked"; mount --bind {venv} "$DATA_DIR/.venv-parked"; '
    script += "mount -o remount,bind,ro /; mount -t tmpfs -o mode=1777,size=64m tmpfs /tmp; "
    if keep_venv:
        script += f'mkdir -p {venv}; mount --no-mtab --move "$DATA_DIR/.venv-parked" {venv}; '
    return script + 'exec "$@"'


READ_ONLY_ROOT = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-ec",
    _read_only_root_script(),
    "read-only-root",
]


def read_only_root_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory(dir="/var/tmp") as data_dir:
        probe = subprocess.run(
            [*READ_ONLY_ROOT, "sh", "-c", 'test ! -w / && test -w /tmp && test -w "$DATA_DIR"'],
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "DATA_DIR": data_dir},
            capture_output=True,
            check=False,
            timeout=30,
        )
    return probe.returncode == 0


READ_ONLY = read_only_root_available()


def image_environment(workdir: Path, port: int) -> dict[str, str]:
    """The image's ENV plus what compose gives the auth service."""
    key_file = workdir / "auth-signing-key.pem"
    if not key_file.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    env = {
        **RUNTIME.env(),
        # the image's PATH starts with /opt/venv/bin; here the same packages are in .venv
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": "/",  # what a container's user without a passwd entry gets
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SERVICE": "auth",
        "SECRET_KEY": "platform-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"sqlite:///{data_dir / 'auth.sqlite3'}",
        "DATA_DIR": str(data_dir),
        "AUTH_SIGNING_KEY_FILE": str(key_file),
        "ORDERS_CLIENT_SECRET": CLIENT_SECRET,
        "PAYMENTS_CLIENT_SECRET": f"payments-{CLIENT_SECRET}",
        "NOTIFICATIONS_CLIENT_SECRET": f"notifications-{CLIENT_SECRET}",
    }
    if not READ_ONLY:
        # no private /tmp to be had: the paths the image keeps in /tmp move into the work folder
        env |= {
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus-multiproc"),
            "GUNICORN_WORKER_TMP_DIR": str(workdir),
            "DRAIN_FILE": str(workdir / "draining"),
        }
    return env


def start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=120)
    if process.returncode != 0:
        raise AssertionError(f"{process.args} failed:\n{output}")


def prepare(workdir: Path) -> tuple[dict[str, str], subprocess.Popen]:
    """What happens before the container starts: the image build's static files, then compose's one-shot
    steps for auth with their own commands: the migration, then the service clients (left running in
    the background, for the test that needs a client to wait on)."""
    env = image_environment(workdir, free_port())
    # the image's WORKDIR: what the Dockerfile's COPY lines take from the context .dockerignore admits
    app = workdir / "app"
    RUNTIME.copy_local_files(app)
    collectstatic_step = next(run for run in RUNTIME.all("RUN") if "collectstatic" in run.arguments)
    build_env, collectstatic = dockerfile.command_with_assignments(collectstatic_step.arguments.split("&&")[0])
    # the build sees the ENV set before that step and the step's own throwaway values, nothing else
    build = start(collectstatic, {**RUNTIME.env(before=collectstatic_step), "PATH": env["PATH"], **build_env}, app)
    steps = compose.load()["services"]
    finish(start(steps["auth-migrate"]["command"], env, app))
    clients = start(steps["auth-clients"]["command"], env, app)
    finish(build)
    return env, clients


class Server:
    """The image's command started with the image's environment; its output goes to a file."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.env = env
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.app = workdir / "app"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        with self.log_path.open("wb") as log:
            command = [*READ_ONLY_ROOT, *IMAGE_COMMAND] if READ_ONLY else IMAGE_COMMAND
            self.process = subprocess.Popen(command, cwd=self.app, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet, or a worker still booting
            time.sleep(0.1)
        raise AssertionError(f"the server did not become ready in 30 s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=GRACEFUL_TIMEOUT + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def metrics_dir(self) -> Path:
        if "PROMETHEUS_MULTIPROC_DIR" in self.env:
            return Path(self.env["PROMETHEUS_MULTIPROC_DIR"])
        # the server's own /tmp, seen through its mount namespace; the name gunicorn.conf.py gives it
        return Path(f"/proc/{self.process.pid}/root/tmp/prometheus-multiproc-{self.env['SERVICE']}-{self.port}")

    def mounts(self) -> dict[str, tuple[str, set[str]]]:
        """mount point -> (filesystem type, options), as the server process sees them."""
        found = {}
        for line in Path(f"/proc/{self.process.pid}/mountinfo").read_text().splitlines():
            fields, _, tail = line.partition(" - ")
            mount_point, options = fields.split()[4], set(fields.split()[5].split(","))
            found[mount_point] = (tail.split()[0], options)
        return found

    def log_entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def prepared():
    # not under /tmp, which the read-only server gets as an empty tmpfs of its own
    workdir = Path(tempfile.mkdtemp(prefix="platform-image-", dir="/var/tmp"))
    env, clients = prepare(workdir)
    yield env, workdir, clients
    clients.kill()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def service_clients(prepared) -> None:
    """The clients compose's auth-clients step provisions, once that step has finished."""
    finish(prepared[2])


@pytest.fixture(scope="module")
def server(prepared):
    env, workdir, _ = prepared
    running = Server(env, workdir).start()
    yield running
    running.stop()


# --- it serves ---------------------------------------------------------------------------------------


def test_image_command_is_what_the_dockerfile_says():
    assert IMAGE_COMMAND == ["gunicorn", "-c", "platform/gunicorn.conf.py"]


@pytest.mark.skipif(not READ_ONLY, reason="a private read-only root needs root and unshare")
def test_server_runs_on_a_read_only_root_with_a_tmpfs_on_tmp(server):
    mounts = server.mounts()
    root, tmp = mounts["/"], mounts["/tmp"]  # noqa: S108
    assert ("ro" in root[1], tmp[0], "rw" in tmp[1]) == (True, "tmpfs", True)


def test_readyz_is_ready_after_migrate(server):
    response = requests.get(f"{server.url}/readyz", timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_version_reports_the_image_build_arguments(server):
    response = requests.get(f"{server.url}/version", timeout=5)
    assert response.json() == {"service": "auth", "version": "dev", "git_sha": "unknown", "color": ""}


def test_admin_stylesheet_is_served_from_the_collected_static_files(server):
    response = requests.get(f"{server.url}/static/admin/css/base.css", timeout=5)
    assert (response.status_code, response.headers["Content-Type"]) == (200, 'text/css; charset="utf-8"')


def test_swagger_ui_page_loads_its_script_from_the_collected_static_files(server):
    page = requests.get(f"{server.url}/api/docs/", timeout=5).text
    (script,) = re.findall(r'src="(/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.js)"', page)
    assert requests.get(f"{server.url}{script}", timeout=5).status_code == 200


def test_metrics_are_written_to_the_multiprocess_directory(server):
    requests.get(f"{server.url}/api/schema/", timeout=5)
    requests.get(f"{server.url}/metrics", timeout=5)
    # The metrics files, and the lock a scrape and the fold of an exited worker's files share.
    assert sorted({path.suffix for path in server.metrics_dir.iterdir()}) == [".db", ".lock"]
    assert {path.name for path in server.metrics_dir.iterdir() if path.suffix == ".lock"} == {".merge.lock"}


def test_every_log_line_is_json(server):
    requests.get(f"{server.url}/api/schema/", timeout=5)
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == []


def test_one_access_line_per_request_with_its_request_id(server):
    request_id = f"platform-test-{time.monotonic_ns()}"
    response = requests.get(f"{server.url}/api/schema/", headers={"X-Request-ID": request_id}, timeout=5)
    assert response.status_code == 200
    time.sleep(0.2)  # the line is written after the response is sent
    lines = [entry for entry in server.log_entries() if request_id in json.dumps(entry)]
    assert [(entry["logger"], entry["request_id"], entry["status"]) for entry in lines] == [
        ("apps.access", request_id, 200)
    ]


def test_dashboards_and_rules_query_metrics_the_service_exposes(server):
    """Names as scraped (django-prometheus adds a `_total` of its own), not as the library spells them."""
    requests.get(f"{server.url}/api/schema/", timeout=5)
    scraped = requests.get(f"{server.url}/metrics", timeout=5).text.splitlines()
    exposed = {line.split("{")[0].split(" ")[0] for line in scraped if not line.startswith("#")}
    expressions = observability.dashboard_expressions() + observability.rule_expressions()
    queried = {name for expression in expressions for name in re.findall(r"(?<![\w:])django_\w+", expression)}
    assert queried - exposed == set()


# --- it drains on SIGTERM ------------------------------------------------------------------------------


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.fixture(scope="module")
def drained(prepared, service_clients) -> dict:
    """A request whose body is still arriving when SIGTERM comes; what the client and the process saw.

    The request is held open by its client, not by the server: the body of a token request is sent
    in two parts with SIGTERM in between, so the worker is inside the application, reading the body,
    when the shutdown starts. No slow endpoint is needed, and the timing is in the test's hands.
    """
    env, workdir, _ = prepared
    server = Server({**env, "PORT": str(free_port())}, workdir).start()
    body = json.dumps(
        {"grant_type": "client_credentials", "client_id": "orders", "client_secret": CLIENT_SECRET}
    ).encode()
    head = (
        f"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=GRACEFUL_TIMEOUT) as sock:
            sock.sendall(head + body[:10])
            time.sleep(1.0)  # the worker accepts at once; its thread then waits inside the app for the rest
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.5)  # the arbiter has handled the signal and told the workers to stop
            sock.sendall(body[10:])
            status, answer = _read_response(sock)
        returncode = server.process.wait(timeout=GRACEFUL_TIMEOUT)
        seconds_to_exit = time.monotonic() - signalled
    finally:
        server.stop()
    return {
        "status": status,
        "answer": answer,
        "returncode": returncode,
        "seconds_to_exit": seconds_to_exit,
        "log": server.log_entries(),
    }


def test_in_flight_request_completes_after_the_shutdown_began(drained):
    messages = [entry["message"] for entry in drained["log"]]
    assert messages.index("Handling signal: term") < messages.index("POST /api/auth/token/ 200")


def test_in_flight_request_is_answered_in_full_after_sigterm(drained):
    assert (drained["status"], drained["answer"]["token_type"]) == (200, "Bearer")


def test_process_exits_cleanly_after_draining(drained):
    assert drained["returncode"] == 0


def test_process_exits_within_the_grace_period(drained):
    assert drained["seconds_to_exit"] < GRACEFUL_TIMEOUT


def test_draining_logs_no_error(drained):
    assert [entry for entry in drained["log"] if entry["level"] in {"error", "critical"}] == []
