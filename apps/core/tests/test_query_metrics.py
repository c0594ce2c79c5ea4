"""Each statement's metrics (apps.core.db.metrics), on whichever database the suite runs against:
counted, timed and its failures counted by type, under django-prometheus' names, as a scrape shows them."""

import pytest
from django.db import DatabaseError, connection, connections

from apps.core import metrics
from apps.core.db.metrics import instrumented
from apps.core.tests.test_request_metrics import grew

pytestmark = pytest.mark.django_db

DATABASE = {"alias": "default", "vendor": connection.vendor}
# What the driver raises for a table that does not exist (Django re-raises it under its own class,
# outside the cursor the metrics wrap).
NO_SUCH_TABLE = {"sqlite": "OperationalError", "postgresql": "UndefinedTable"}


def scrape() -> bytes:
    return metrics.exposition(with_state=False)  # the database gauges would add their own statements


def test_the_backend_is_the_platforms():
    package = {"sqlite": "sqlite3", "postgresql": "postgresql"}[connection.vendor]
    assert type(connections["default"]).__module__ == f"apps.core.db.{package}.base"


def test_a_statement_is_counted_and_timed():
    before = scrape()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT 2")
    after = scrape()
    assert grew(before, after, "django_db_execute_total", **DATABASE) == 2
    assert grew(before, after, "django_db_query_duration_seconds_count", **DATABASE) == 2
    assert grew(before, after, "django_db_query_duration_seconds_bucket", le="+Inf", **DATABASE) == 2
    assert grew(before, after, "django_db_query_duration_seconds_sum", **DATABASE) > 0
    assert grew(before, after, "django_db_execute_many_total", **DATABASE) == 0


def test_a_bulk_statement_counts_each_parameter_set_and_is_timed_once():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE metrics_bulk (n integer)")
        before = scrape()
        cursor.executemany("INSERT INTO metrics_bulk (n) VALUES (%s)", ([n] for n in range(3)))  # a generator
        after = scrape()
        cursor.execute("SELECT count(*) FROM metrics_bulk")
        assert cursor.fetchone()[0] == 3
    assert grew(before, after, "django_db_execute_total", **DATABASE) == 3
    assert grew(before, after, "django_db_execute_many_total", **DATABASE) == 3
    assert grew(before, after, "django_db_query_duration_seconds_count", **DATABASE) == 1


def test_a_failed_statement_is_counted_by_its_error_and_still_timed():
    error = {**DATABASE, "type": NO_SUCH_TABLE[connection.vendor]}
    before = scrape()
    # No savepoint around it, whose statements would count too: nothing runs after it in the test's
    # transaction, which is rolled back.
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    after = scrape()
    assert grew(before, after, "django_db_errors_total", **error) == 1
    assert grew(before, after, "django_db_execute_total", **DATABASE) == 1
    assert grew(before, after, "django_db_query_duration_seconds_count", **DATABASE) == 1


def test_the_cursor_class_is_built_once_per_database():
    connection.ensure_connection()
    first, second = connection.create_cursor(), connection.create_cursor()
    try:
        assert type(first) is type(second)
        assert type(first) is instrumented(type(first).__mro__[1], "default", connection.vendor)
    finally:
        first.close()
        second.close()
