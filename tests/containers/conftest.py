"""The real image and the real compose stack, for `make test-containers`.

Once per session: a container engine from platform/containers/engine.sh (one that answers, or its
own in a network namespace), the image built by platform/containers/image.sh (as `make image`),
PostgreSQL, Prometheus and Jaeger from the registry or, where none answers, from the stand-ins of
platform/containers/local-images.sh, then `docker compose up` of the whole stack but Grafana (no
registry reachable here serves it and it has no stand-in). Everything is torn down afterwards: on
success, on failure, on Ctrl-C and on SIGTERM. The build time, the image size and the time until
every service was ready are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "platform" / "containers"
COMPOSE_FILE = REPO / "platform" / "compose.yaml"
ENV_FILE = REPO / "platform" / "compose.env.example"
COMPOSE = Path(sys.executable).parent / "docker-compose"
PROJECT = "platform-containers-test"
IMAGE = "platform-app:local"
APP_VERSION = "containers-test"
PORTS = {"auth": 8001, "orders": 8002, "payments": 8003, "notifications": 8004}
PROMETHEUS_PORT = 9090
JAEGER_PORT = 16686
# Everything in the compose file but Grafana; the one-shot steps start as the services' dependencies.
WORKERS = ("orders-relay", "payments-relay", "notifications-email-worker")
LONG_RUNNING = (*PORTS, *WORKERS, "postgres", "prometheus", "jaeger")
APP_CONTAINERS = (*PORTS, *WORKERS)
READY_TIMEOUT = 240

TIMINGS: dict[str, str] = {}


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.containers)


def pytest_configure(config):
    # pytest turns Ctrl-C into a teardown of the session's fixtures; SIGTERM (a CI job cancelled,
    # `timeout`) gets the same treatment, so the stack never outlives the run.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("image and compose stack")
        for name, value in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {value}")


@contextlib.contextmanager
def progress_shown(request) -> Iterator[None]:
    """Let the scripts' progress reach the terminal while they run (a cold build takes minutes)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        yield


def exported(text: str) -> dict[str, str]:
    """The `export NAME=value` lines engine.sh prints, as a mapping."""
    values = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


def compose_default(variable: str) -> str:
    """The default the compose file gives an image variable, `${VARIABLE:-default}`."""
    match = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", COMPOSE_FILE.read_text())
    assert match, f"{COMPOSE_FILE} has no default for {variable}"
    return match.group(1)


@dataclass
class ComposeStack:
    environment: dict[str, str]
    address: str
    engine: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://{self.address}:{PORTS[service]}"

    @property
    def urls(self) -> dict[str, str]:
        return {service: self.url(service) for service in PORTS}

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.address}:{PROMETHEUS_PORT}"

    @property
    def jaeger_url(self) -> str:
        return f"http://{self.address}:{JAEGER_PORT}"

    def compose(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
        command = [str(COMPOSE), "--file", str(COMPOSE_FILE), "--env-file", str(ENV_FILE), "--project-name", PROJECT]
        return subprocess.run(
            [*command, *arguments], env=self.environment, capture_output=True, text=True, timeout=timeout, check=False
        )

    def docker(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", *arguments], env=self.environment, capture_output=True, text=True, timeout=timeout, check=False
        )

    def container_id(self, service: str) -> str:
        result = self.compose("ps", "--quiet", service)
        assert result.returncode == 0 and result.stdout.strip(), (service, result.stderr)
        return result.stdout.split()[0]

    def inspect(self, service: str) -> dict:
        result = self.docker("inspect", self.container_id(service))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess:
        return self.docker("exec", self.container_id(service), *command)

    def diagnosis(self) -> str:
        """What compose says about every container, and the end of each one's log."""
        listing = self.compose("ps", "--all").stdout
        logs = self.compose("logs", "--no-color", "--tail", "30").stdout
        return f"{listing}\n{logs}"


def run_script(command: list[str], environment: dict[str, str], timeout: float) -> str:
    """Run one of platform/containers' scripts; its progress goes to the terminal, its answer is returned."""
    result = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"{shlex.join(command)} exited {result.returncode}", pytrace=False)
    return result.stdout.strip()


@pytest.fixture(scope="session")
def engine() -> Iterator[dict[str, str]]:
    result = subprocess.run(
        [str(SCRIPTS / "engine.sh"), "up"], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        pytest.exit(f"no container engine for the container tests: {result.stderr.strip()}", returncode=1)
    values = exported(result.stdout)
    try:
        yield values
    finally:
        if values.get("ENGINE_STARTED") == "1":
            subprocess.run([str(SCRIPTS / "engine.sh"), "down"], timeout=180, check=False)


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def compose_stack(request, engine) -> Iterator[ComposeStack]:
    git_sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    environment = {
        **os.environ,
        **engine,
        "IMAGE": IMAGE,
        "APP_IMAGE": IMAGE,
        "APP_VERSION": APP_VERSION,
        "GIT_SHA": git_sha.stdout.strip(),
        "PYTHON": sys.executable,
    }
    with progress_shown(request):
        started = time.monotonic()
        run_script([str(SCRIPTS / "image.sh")], environment, timeout=1800)
        TIMINGS["image build (base included when not cached)"] = f"{time.monotonic() - started:.0f} s"
        for variable, name in (
            ("POSTGRES_IMAGE", "postgres"),
            ("PROMETHEUS_IMAGE", "prometheus"),
            ("JAEGER_IMAGE", "jaeger"),
        ):
            official = compose_default(variable)
            started = time.monotonic()
            environment[variable] = run_script(
                [str(SCRIPTS / "local-images.sh"), name, "--unless-available", official], environment, timeout=1800
            )
            TIMINGS[f"{name} image"] = f"{environment[variable]} ({time.monotonic() - started:.0f} s)"
    stack = ComposeStack(environment=environment, address=engine["PUBLISH_ADDRESS"], engine=engine)
    size = stack.docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()
    TIMINGS["image size"] = f"{int(size) / 1e6:.0f} MB ({IMAGE})"
    try:
        started = time.monotonic()
        result = stack.compose("up", "--detach", "--no-build", "--pull", "never", *LONG_RUNNING)
        if result.returncode != 0:
            pytest.fail(f"docker compose up failed:\n{result.stderr}\n{stack.diagnosis()}", pytrace=False)
        deadline = started + READY_TIMEOUT
        while not all(ready(url) for url in stack.urls.values()):
            if time.monotonic() > deadline:
                pytest.fail(f"not every service ready within {READY_TIMEOUT} s:\n{stack.diagnosis()}", pytrace=False)
            time.sleep(1)
        TIMINGS["compose up until every service was ready"] = f"{time.monotonic() - started:.0f} s"
        yield stack
    finally:
        down = stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300)
        if down.returncode != 0:
            pytest.fail(f"docker compose down failed; containers may be left:\n{down.stderr}", pytrace=False)
