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

Timestamps are read by psycopg's compiled parser. Django loads every `timestamptz` with a subclass
of psycopg's pure-Python loader (to set the datetime's tzinfo to its own `timezone`), and psycopg
swaps in the compiled build only for the loaders of its own module, so each timestamp a query
returns was parsed by a regular expression in Python: about 4 µs, against about 1.3 µs here, and an
order read returns five, a relay's poll of the outbox a few per event. `_TimestamptzLoader` gives
Django the same datetimes (the same instant, `timezone` as tzinfo, NULL as None; tests compare the
two) and keeps the `timezone` attribute Django's cursors check before registering their own.
"""

import functools
import select
from datetime import datetime, tzinfo

from django.db.backends.postgresql import base as django_base
from django_prometheus.db.backends.postgresql import base
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader

from apps.core.db.metrics import instrumented

TIMESTAMPTZ_OID = django_base.TIMESTAMPTZ_OID


def _parser_class() -> type[Loader]:
    """psycopg's text `timestamptz` loader, compiled when its C build is installed (psycopg[binary]):
    what psycopg itself registers, as a map that registers its own loader answers it."""
    probe = AdaptersMap()
    probe.register_loader(TIMESTAMPTZ_OID, TimestamptzLoader)
    return probe.get_loader(TIMESTAMPTZ_OID, Format.TEXT)


_PARSER = _parser_class()


class _TimestamptzLoader(Loader):
    """Django's timestamptz loader (django.db.backends.postgresql.psycopg_any.BaseTzLoader) over
    psycopg's compiled parser: the datetime psycopg parses in the connection's time zone, with
    `timezone` (a subclass's) as its tzinfo, as Django's gives it."""

    timezone: tzinfo | None = None

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._parse = _PARSER(oid, context).load

    def load(self, data) -> datetime:
        return self._parse(data).replace(tzinfo=self.timezone)


@functools.lru_cache
def _adapters(template: AdaptersMap, timezone: tzinfo | None) -> AdaptersMap:
    """Django's adapters for a connection, with `_TimestamptzLoader` for its `timezone`; one map per
    template and time zone, as Django keeps one template per time zone."""
    adapters = AdaptersMap(template)
    adapters.register_loader(TIMESTAMPTZ_OID, type("TimestamptzLoader", (_TimestamptzLoader,), {"timezone": timezone}))
    return adapters


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        # Django's parameters, with the cursor class of apps.core.db.metrics instead of
        # django-prometheus' (which its own get_connection_params would wrap them in).
        params = django_base.DatabaseWrapper.get_connection_params(self)
        params["cursor_factory"] = instrumented(params["cursor_factory"], self.alias, self.vendor)
        params["context"] = _adapters(params["context"], self.timezone)
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
