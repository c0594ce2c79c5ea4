"""Each statement counted and timed under django-prometheus' names, at the cost of two writes.

django-prometheus' cursor wrapper looks up every label set afresh on every statement (three lookups
and two helper objects per `execute`), and on SQLite builds a new cursor class for every cursor.
Here the class is built once per cursor class and database, with its label sets looked up then; a
statement costs an increment and an observation. The series are django-prometheus' own objects, so
their names, labels and buckets are unchanged: `django_db_execute_total`,
`django_db_execute_many_total`, `django_db_query_duration_seconds` (dashboards read it) and
`django_db_errors_total` by exception type. New connections are still counted by django-prometheus'
wrapper (`django_db_new_connections_total`), once per connection.
"""

from __future__ import annotations

import functools
import time

from django_prometheus.db import errors_total, execute_many_total, execute_total, query_duration_seconds


@functools.cache
def instrumented(cursor_class: type, alias: str, vendor: str) -> type:
    """`cursor_class` with its statements counted and timed for the database `alias`."""
    executed = execute_total.labels(alias, vendor)
    executed_in_bulk = execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)

    def failed(error: BaseException) -> None:
        errors_total.labels(alias, vendor, type(error).__name__).inc()

    class InstrumentedCursor(cursor_class):
        def execute(self, *args, **kwargs):
            executed.inc()
            started = time.perf_counter()
            try:
                return super().execute(*args, **kwargs)
            except BaseException as error:
                failed(error)
                raise
            finally:
                duration.observe(time.perf_counter() - started)

        def executemany(self, query, param_list, *args, **kwargs):
            param_list = param_list if hasattr(param_list, "__len__") else list(param_list)
            executed.inc(len(param_list))
            executed_in_bulk.inc(len(param_list))
            started = time.perf_counter()
            try:
                return super().executemany(query, param_list, *args, **kwargs)
            except BaseException as error:
                failed(error)
                raise
            finally:
                duration.observe(time.perf_counter() - started)

    InstrumentedCursor.__name__ = InstrumentedCursor.__qualname__ = f"Instrumented{cursor_class.__name__}"
    return InstrumentedCursor
