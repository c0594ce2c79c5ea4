"""platform/containers/engine.sh where it cannot give an engine: one clear line and a non-zero exit,
quickly, and nothing made. (Starting the engine for real is what tests/containers does.)"""

import os
import subprocess
import time

from tests.platform.dockerfile import REPO

ENGINE = REPO / "platform" / "containers" / "engine.sh"


def as_unprivileged_user(command: list[str]) -> list[str]:
    """The command as nobody when the tests run as root; as the tests' own user otherwise."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return command


def test_without_an_engine_or_root_it_says_so_in_one_line_and_exits_1():
    environment = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    started = time.monotonic()
    result = subprocess.run(
        as_unprivileged_user([str(ENGINE), "up"]),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "engine: no container engine answers (DOCKER_HOST=unix:///nonexistent/docker.sock), and starting one"
        " needs root (a network namespace and dockerd). Run as root, or point DOCKER_HOST at an engine.\n"
    )


def test_an_unknown_command_prints_the_usage():
    result = subprocess.run([str(ENGINE), "restart"], capture_output=True, text=True, timeout=10, check=False)
    assert (result.returncode, result.stderr) == (2, f"usage: {ENGINE} up|down [--purge]|status\n")
