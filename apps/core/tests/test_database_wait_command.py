"""`manage.py database_wait` as an init container runs it: a fresh process against a real database,
and against an address where nothing listens."""

import os
import socket
import subprocess
import sys
import time

from django.conf import settings


def free_port_refusing() -> int:
    """A port of 127.0.0.1 where nothing listens: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_wait(database_url: str, *arguments: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "apps.settings",
        "SERVICE": "orders",
        "DEBUG": "true",
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "database_wait", *arguments],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_returns_at_once_when_the_database_answers(tmp_path):
    result = run_wait(f"sqlite:///{tmp_path / 'orders.sqlite3'}", "--timeout", "10")

    assert (result.returncode, result.stdout.startswith("database answered after")) == (0, True), result.stderr
    assert result.stdout.rstrip().endswith("(1 attempts)")


def test_it_gives_up_after_the_timeout_with_the_last_error():
    port = free_port_refusing()
    started = time.monotonic()

    result = run_wait(f"postgres://nobody@127.0.0.1:{port}/none", "--timeout", "3", "--interval", "0.5")

    assert result.returncode == 1
    assert 2.5 <= time.monotonic() - started < 30
    assert "the database was not ready within 3 s" in result.stderr


def test_with_migrated_it_waits_for_the_migrations_and_names_how_many_are_missing(tmp_path):
    result = run_wait(f"sqlite:///{tmp_path / 'orders.sqlite3'}", "--migrated", "--timeout", "2", "--interval", "0.5")

    assert result.returncode == 1
    assert "migrations not applied yet" in result.stderr


def test_with_migrated_it_returns_once_the_service_is_migrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'orders.sqlite3'}"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.settings", "SERVICE": "orders", "DEBUG": "true"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=settings.BASE_DIR,
        env={**environment, "DATABASE_URL": url},
        capture_output=True,
        timeout=120,
        check=True,
    )

    result = run_wait(url, "--migrated", "--timeout", "10")

    assert result.returncode == 0, result.stderr
