"""The SQLite backend's placeholder conversion (apps.core.db.sqlite3): the same text Django's cursor
makes, kept per statement text, and statements that run as they would with Django's own cursor."""

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper

from apps.core.db.sqlite3.base import QMARK_CACHED_CHARS, CursorWrapper, _qmark

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's cursor"),
]

STATEMENTS = [
    "SELECT 1",
    "SELECT %s",
    'SELECT "a"."id" FROM "a" WHERE ("a"."x" = %s AND "a"."y" = %s)',
    "SELECT %s LIKE '%%50%%'",  # a literal percent sign, doubled
    "SELECT '%%s', %s",  # a literal "%s" and a placeholder
    "SELECT '%%%%'",
    "INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s)",
]


def cursors():
    connection.ensure_connection()
    return (
        connection.connection.cursor(factory=CursorWrapper),
        connection.connection.cursor(factory=SQLiteCursorWrapper),
    )


@pytest.mark.parametrize("statement", STATEMENTS)
def test_a_statement_converts_as_djangos_cursor_converts_it(statement):
    ours, djangos = cursors()
    assert ours.convert_query(statement) == djangos.convert_query(statement)
    assert ours.convert_query(statement) == djangos.convert_query(statement)  # from the cache this time


def test_named_parameters_and_long_statements_convert_as_djangos_do():
    ours, djangos = cursors()
    named = "SELECT %(a)s, %(b)s, '%%'"
    assert ours.convert_query(named, param_names=["a", "b"]) == djangos.convert_query(named, param_names=["a", "b"])
    long = "SELECT " + ", ".join(["%s"] * (QMARK_CACHED_CHARS // 4))
    before = _qmark.cache_info()
    assert ours.convert_query(long) == djangos.convert_query(long)
    after = _qmark.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # not looked up, so not kept


def test_a_statement_text_is_converted_once():
    ours, _ = cursors()
    statement = "SELECT %s, 'converted once'"
    ours.convert_query(statement)
    misses = _qmark.cache_info().misses
    ours.convert_query("".join(["SELECT %s, ", "'converted once'"]))  # an equal text, another object
    assert _qmark.cache_info().misses == misses


def test_statements_run_through_the_connections_cursor():
    with connection.cursor() as cursor:
        assert isinstance(cursor.cursor, CursorWrapper)
        cursor.execute("SELECT %s, %s LIKE '%%50%%', '%%s'", ["a", "a 50% b"])
        assert cursor.fetchone() == ("a", 1, "%s")
        cursor.execute("SELECT %(x)s || %(x)s", {"x": "ab"})
        assert cursor.fetchone() == ("abab",)
