"""PostgreSQL's health check (apps/core/db/postgresql): no round trip for a connection the server
left alone, Django's `SELECT 1` (and a reconnect) for one the server closed."""

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the check is PostgreSQL's"),
]


def server_session() -> psycopg.Connection:
    """A connection of the test's own beside Django's, to watch and to end Django's from the server."""
    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database["HOST"],
        port=database["PORT"] or 5432,
        user=database["USER"],
        password=database["PASSWORD"] or None,
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )


def request_starts() -> None:
    """What Django does between two requests of a worker, then before the next one's first query."""
    connection.close_if_unusable_or_obsolete()
    connection.close_if_health_check_failed()


def last_statement(server: psycopg.Connection, pid: int) -> str:
    return server.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def test_the_backend_is_the_platforms():
    assert connections["default"].health_check_enabled is True
    assert type(connections["default"]).__module__ == "apps.core.db.postgresql.base"


def test_a_connection_the_server_left_alone_is_kept_without_a_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), 'the last statement'")
        pid = cursor.fetchone()[0]
    with server_session() as server:
        request_starts()
        assert connection.connection is not None
        assert last_statement(server, pid) == "SELECT pg_backend_pid(), 'the last statement'"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == pid  # the same connection


def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with server_session() as server:
        assert server.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0] is True
    request_starts()
    with connection.cursor() as cursor:  # no OperationalError: a new connection
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
