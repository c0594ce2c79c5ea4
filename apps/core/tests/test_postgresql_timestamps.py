"""Timestamps on PostgreSQL (apps/core/db/postgresql): parsed by psycopg's compiled loader, read as
Django's own loader reads them."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from apps.core.db.postgresql.base import _PARSER, TIMESTAMPTZ_OID, _TimestamptzLoader
from apps.core.models import KeySetSnapshot

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the loader is PostgreSQL's"),
]

# What a timestamptz column can hold, as the server sends it in the connection's time zone (UTC).
VALUES = """
    SELECT now(), '2026-12-07 12:30:45+00'::timestamptz, '2026-12-07 12:30:45.1+00'::timestamptz,
           '2026-12-07 12:30:45.123456+00'::timestamptz, '2026-01-01 10:00:00.5+05:30'::timestamptz,
           '1969-07-20 20:17:40-04'::timestamptz, '0001-01-01 00:00:00+00'::timestamptz,
           '9999-12-31 23:59:59.999999+00'::timestamptz, NULL::timestamptz
"""


def rows(*, djangos_loader: bool) -> list[tuple]:
    with connection.cursor() as cursor:
        if djangos_loader:
            register_tzloader(connection.timezone, cursor.cursor)  # what Django would have registered
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        assert issubclass(loader, _TimestamptzLoader) is not djangos_loader
        cursor.execute(VALUES)  # `now()` is the test's transaction's start: the same in both reads
        return cursor.fetchall()


def test_the_connection_parses_timestamps_with_the_platforms_loader_over_psycopgs_compiled_one():
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert issubclass(loader, _TimestamptzLoader)
    # Django registers a loader of its own on a cursor whose connection's loader has another zone.
    assert loader.timezone is connection.timezone is UTC
    # psycopg[binary] is what requirements.txt installs; without it this would be the Python parser.
    assert _PARSER.__module__.startswith("psycopg_binary"), _PARSER


def test_the_timestamps_are_djangos_own_value_for_value_tzinfo_included():
    ours, djangos = rows(djangos_loader=False), rows(djangos_loader=True)
    assert ours == djangos
    assert [value.tzinfo for value in ours[0] if value is not None] == [UTC] * 8
    assert [type(value) for value in ours[0]] == [type(value) for value in djangos[0]]


def test_a_timestamp_outside_pythons_range_is_refused_as_djangos_loader_refuses_it():
    for djangos_loader in (False, True):
        with connection.cursor() as cursor:
            if djangos_loader:
                register_tzloader(connection.timezone, cursor.cursor)
            cursor.execute("SELECT 'infinity'::timestamptz")
            with pytest.raises(DataError, match="infinity"):
                cursor.fetchall()


def test_a_model_reads_back_the_instant_it_stored():
    written = datetime(2026, 12, 7, 12, 30, 45, 123456, tzinfo=UTC)
    KeySetSnapshot.objects.create(source="https://auth.invalid/jwks", document={"keys": []}, fetched_at=written)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM fetched_at) FROM core_keysetsnapshot")
        stored = cursor.fetchone()[0]
    read = KeySetSnapshot.objects.get().fetched_at
    assert read == written and read.tzinfo is UTC
    assert stored == Decimal("1796646645.123456")
