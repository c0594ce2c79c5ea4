"""JSON log lines: one object per line with service, color, version, the request id and, inside a
span, the trace and span ids (apps.core.tracing)."""

import json
import logging
from datetime import UTC, datetime

from django.conf import settings

from apps.core import context, tracing

# Attributes every LogRecord has; anything else on a record was passed as `extra=` and is logged.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Stamps each record with who wrote it, for which request and in which trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = getattr(settings, "SERVICE", "")
        record.color = getattr(settings, "DEPLOY_COLOR", "")
        record.version = getattr(settings, "APP_VERSION", "")
        record.request_id = context.request_id.get()
        record.trace_id, record.span_id = tracing.ids()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which gunicorn worker
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRIBUTES:
                continue
            # An `extra=` key never overwrites a member every line has (ts, level, logger, pid...).
            entry[f"extra_{key}" if key in entry else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
