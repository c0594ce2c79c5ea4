"""The running platform, shared by every test folder that talks to it over HTTP (tests/e2e, tests/perf).

The four services start as real gunicorn processes once per test session, with both outbox relays;
tests create their own users so they do not depend on each other. With DATABASE_URL pointing at
PostgreSQL each service gets a database of its own on that server, created here and dropped afterwards.
"""

import os

import pytest

from tests.live import Databases, Stack, stack_start


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    databases = Databases(tmp_path_factory.mktemp("databases"), os.environ.get("DATABASE_URL"))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, databases) -> Stack:
    yield from stack_start(tmp_path_factory.mktemp("stack"), databases, ("auth", "orders", "payments", "notifications"))
