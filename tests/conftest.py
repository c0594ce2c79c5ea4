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


# Failures already explained: a module fixture's error is raised again, the same object, for each
# of the module's tests, and one diagnosis of it is enough. Kept by id, with the object (so no other
# error can take over its id).
_diagnosed: dict[int, BaseException | None] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that failed with the shared stack running reports what its workers and outboxes were
    doing, so a delivery that never came says why in the report itself."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    error = call.excinfo.value if call.excinfo else None
    if report.failed and isinstance(stack, Stack) and id(error) not in _diagnosed:
        _diagnosed[id(error)] = error
        report.sections.append(("stack diagnosis", stack.diagnosis()))
    return report
