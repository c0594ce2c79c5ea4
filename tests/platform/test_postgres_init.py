"""platform/postgres/init-databases.sh against a real PostgreSQL server: a role and a database per service.

The script is what the postgres container runs on its first start. Here it runs against the
server the test suite uses (DATABASE_URL when it names PostgreSQL, else 127.0.0.1:5432), on
databases with a unique prefix that the test drops afterwards.
"""

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.platform.dockerfile import REPO

SCRIPT = REPO / "platform" / "postgres" / "init-databases.sh"
SERVICES = ("auth", "orders")  # two are enough to see one kept out of the other's database


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgres") else "postgres://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def server():
    parts = urlsplit(_server_url())
    admin = {"host": parts.hostname, "port": parts.port or 5432, "user": parts.username or "postgres"}
    if parts.password:
        admin["password"] = parts.password
    try:
        psycopg.connect(dbname="postgres", connect_timeout=3, **admin).close()
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server to run the init script against: {error}")
    return admin


@pytest.fixture(scope="module")
def created(server):
    prefix = f"platformtest_{uuid.uuid4().hex[:8]}_"
    names = {service: f"{prefix}{service}" for service in SERVICES}
    passwords = {service: f"pw-{uuid.uuid4().hex}'quoted" for service in SERVICES}
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": server["host"],
        "PGPORT": str(server["port"]),
        "POSTGRES_USER": server["user"],
        "SERVICE_DATABASES": " ".join(names.values()),
        **{f"{names[service].upper()}_DB_PASSWORD": passwords[service] for service in SERVICES},
    }
    if "password" in server:
        environment["PGPASSWORD"] = server["password"]
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, check=False, timeout=60
    )
    yield {"result": result, "names": names, "passwords": passwords}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
        for name in names.values():
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_script_succeeds(created):
    assert created["result"].returncode == 0, created["result"].stderr


def test_each_database_belongs_to_its_own_role(server, created):
    names = list(created["names"].values())
    with psycopg.connect(dbname="postgres", **server) as connection:
        rows = connection.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s) ORDER BY datname",
            [names],
        ).fetchall()
    assert rows == [(name, name) for name in sorted(names)]


def test_a_service_role_cannot_connect_to_another_service_database(server, created):
    names = created["names"]
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(
            host=server["host"],
            port=server["port"],
            dbname=names["orders"],
            user=names["auth"],
            password=created["passwords"]["auth"],
        ).close()


def test_migrations_apply_as_the_service_role(server, created):
    name = created["names"]["auth"]
    database_url = f"postgres://{name}@{server['host']}:{server['port']}/{name}"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=REPO,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SERVICE": "auth",
            "SECRET_KEY": "platform-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": database_url,
            "PGPASSWORD": created["passwords"]["auth"],  # libpq reads it; the URL stays free of quoting
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
