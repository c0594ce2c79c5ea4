"""PostgreSQL as django-prometheus instruments it, with a health check that costs no round trip.

Django's CONN_HEALTH_CHECKS runs `SELECT 1` before the first query of every request that reuses a
connection, so a worker whose connection the server closed (a restart, a failover, an idle timeout)
reconnects instead of answering 500. That is one more round trip per request: for an order read on
PostgreSQL, the check and the read itself (apps.core.prepared.run_together) are the two there are.

A server that closes a connection says so on it: a FATAL message, then the end of the stream. Both
make the socket readable, and an idle connection in autocommit receives nothing else unasked (no
LISTEN here; a NOTICE is rare). So the check first looks at the socket without waiting: nothing to
read means nothing has closed it, and the request goes on without the query. Anything to read, or a
connection psycopg already knows is broken, gets Django's own check, which reads it and closes the
connection if it is gone. A server that vanished without a word (a host lost, no FIN) leaves the
socket quiet; `SELECT 1` would then wait for the network's timeout just as the request's own query
does, so the real check adds nothing there.

Each statement is recorded by apps.core.db.metrics, at less cost than django-prometheus' wrapper.
"""

import select

from django.db.backends.postgresql import base as django_base
from django_prometheus.db.backends.postgresql import base

from apps.core.db.metrics import instrumented


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        # Django's parameters, with the cursor class of apps.core.db.metrics instead of
        # django-prometheus' (which its own get_connection_params would wrap them in).
        params = django_base.DatabaseWrapper.get_connection_params(self)
        params["cursor_factory"] = instrumented(params["cursor_factory"], self.alias, self.vendor)
        return params

    def _silent_since_last_answer(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # no socket any more
            return False
        return not readable

    def close_if_health_check_failed(self):
        if (
            self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and self._silent_since_last_answer()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
