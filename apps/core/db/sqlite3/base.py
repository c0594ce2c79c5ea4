"""SQLite as django-prometheus instruments it, with each statement recorded by one cursor class built
once (apps.core.db.metrics) instead of a class per cursor."""

from django_prometheus.db.backends.sqlite3 import base

from apps.core.db.metrics import instrumented


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name=None):
        return self.connection.cursor(factory=instrumented(self.CURSOR_CLASS, self.alias, self.vendor))
