"""SQLite as django-prometheus instruments it, with each statement recorded by one cursor class built
once (apps.core.db.metrics) instead of a class per cursor, and its placeholders converted once per
statement text.

Django writes `%s` placeholders and its SQLite cursor rewrites them to `?` on every execute, a regular
expression over the whole statement: about 9 µs for an order's SELECT of eighteen columns, more than
SQLite takes to run it. The same texts come back again and again (a prepared read's, an INSERT's
for the same columns), so the rewrite is kept per text, for the most recently used ones.
"""

import functools

from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX, SQLiteCursorWrapper
from django_prometheus.db.backends.sqlite3 import base

from apps.core.db.metrics import instrumented

# Longer texts (an IN list of thousands of values) are converted each time, not kept.
QMARK_CACHED_CHARS = 8192


@functools.lru_cache(maxsize=1024)
def _qmark(query: str) -> str:
    # What SQLiteCursorWrapper.convert_query does with positional parameters.
    return FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class CursorWrapper(SQLiteCursorWrapper):
    def convert_query(self, query, *, param_names=None):
        if param_names is None and len(query) <= QMARK_CACHED_CHARS:
            return _qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseWrapper(base.DatabaseWrapper):
    CURSOR_CLASS = CursorWrapper

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=instrumented(self.CURSOR_CLASS, self.alias, self.vendor))
