"""Every migration of every service is backward compatible with the code still live on the other color.

Blue and green share each service's database: `deploy` migrates before the new color starts, while the
old one keeps serving on the migrated schema. django-migration-linter reads the SQL each migration
runs on PostgreSQL (the production database; SQLite rebuilds tables and reads as false alarms) and
fails on what the old code cannot survive: a dropped or renamed column or table, a NOT NULL column
without a default, and the like. Warnings (an index build locking a table) are printed, not failed.
The server is the suite's (DATABASE_URL when it names PostgreSQL, else 127.0.0.1:5432); each service
gets a database of its own, dropped afterwards.
"""

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django_migration_linter.sql_analyser.analyser import analyse_sql_statements, get_sql_analyser_class_from_db_vendor

from apps.services import SERVICES

# The app label of each service's migrations (auth's app is labelled `identity`, see apps/auth/apps.py).
LABELS = {"auth": "identity", "orders": "orders", "payments": "payments", "notifications": "notifications"}

LINT = """
import django
django.setup()
from django_migration_linter import MigrationLinter
linter = MigrationLinter(include_apps={labels!r}, no_cache=True, ignore_initial_migrations=True)
linter.lint_all_migrations()
linter.print_summary()
raise SystemExit(1 if linter.has_errors else 0)
"""


@pytest.fixture(scope="module")
def server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    url = url if url.startswith("postgres") else "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(url)
    try:
        psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server to lint the migrations against: {error}")
    return f"{parts.scheme}://{parts.netloc}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_services_migrations_are_safe_for_the_color_still_live(server, service):
    name = f"lint_{service}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    labels = ["core", LABELS[service]]
    try:
        result = subprocess.run(
            [sys.executable, "-c", LINT.format(labels=labels)],
            cwd=settings.BASE_DIR,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "apps.settings",
                "SERVICE": service,
                "DEBUG": "true",
                "DATABASE_URL": f"{server}/{name}",
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    summary = result.stdout[result.stdout.find("*** Summary ***") :]
    print(f"{service}:\n{summary}")  # noqa: T201 (the linter's verdict, in the test output)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ('ALTER TABLE "orders_order" DROP COLUMN "total" CASCADE;', "DROP_COLUMN"),
        ('ALTER TABLE "orders_order" RENAME COLUMN "total" TO "amount";', "RENAME_COLUMN"),
        ('ALTER TABLE "orders_order" ADD COLUMN "note" varchar(10) NOT NULL;', "NOT_NULL"),
        ('DROP TABLE "orders_order" CASCADE;', "DROP_TABLE"),
    ],
)
def test_the_linter_fails_what_the_live_color_cannot_survive(statement, code):
    """The check above is not vacuous: the same analyser refuses the PostgreSQL Django writes for a
    removed, renamed or required new field, and a dropped model."""
    errors, _, _ = analyse_sql_statements(get_sql_analyser_class_from_db_vendor("postgresql"), [statement])

    assert [error.code for error in errors] == [code]
