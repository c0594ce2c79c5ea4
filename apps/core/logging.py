"""JSON log lines: one object per line with service, color, version, the request id and, inside a
span, the trace and span ids and whether the trace is sampled (apps.core.tracing)."""

import json
import logging
import os
import threading
import time
import weakref
from datetime import UTC, datetime

from django.conf import settings

from apps.core import context, tracing

# Attributes every LogRecord has; anything else on a record was passed as `extra=` and is logged.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# What `json.dumps(entry, default=str)` would build afresh for every line.
_ENCODER = json.JSONEncoder(default=str)


class ContextFilter(logging.Filter):
    """Stamps each record with who wrote it, for which request and in which trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = getattr(settings, "SERVICE", "")
        record.color = getattr(settings, "DEPLOY_COLOR", "")
        record.version = getattr(settings, "APP_VERSION", "")
        record.request_id = context.request_id.get()
        record.trace_id, record.span_id, record.trace_sampled = tracing.ids()
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
        return _ENCODER.encode(entry)


_UNWRITTEN = logging.makeLogRecord({"msg": "queued log lines could not be written", "levelno": logging.ERROR})


class StdoutHandler(logging.StreamHandler):
    """Writes each record as its line on the stream; lines below WARNING a moment later, together.

    A line written and flushed as it is logged is a system call per request, made under the handler's
    lock: under load a worker's threads queue on that lock, and each write hands the interpreter to
    another thread and waits to get it back. Here a line below WARNING is formatted in the thread
    that logs it (its request id and trace ids are that thread's) and queued; a writer thread writes
    what is queued as one write, at most `interval` seconds later. A WARNING or worse is written
    before `emit` returns, after everything queued before it, and so is everything queued when the
    process exits (logging.shutdown flushes every handler). Lines keep the order they were logged in.
    What a process killed outright (SIGKILL, the OOM killer) loses is at most `interval` seconds of
    lines below WARNING. `interval` 0: every line written as it is logged.
    """

    def __init__(self, stream=None, interval: float | None = None):
        super().__init__(stream)
        self.interval = settings.LOG_WRITE_INTERVAL_SECONDS if interval is None else interval
        self._queue_reset()
        # A forked child (a gunicorn worker) starts with no writer thread, and the lines its parent
        # had queued are the parent's to write, not a second time there. No write is under way as the
        # process forks (the handler's lock is held across the fork): a child inheriting the stream
        # locked by a writer thread that does not exist there would block at its first line.
        handler = weakref.ref(self)
        os.register_at_fork(
            before=lambda: (held := handler()) is not None and held.acquire(),
            after_in_parent=lambda: (held := handler()) is not None and held.release(),
            after_in_child=lambda: (forked := handler()) is not None and forked._queue_reset(),
        )

    def _queue_reset(self) -> None:
        self._queued: list[str] = []
        self._queued_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle holds the handler's lock around emit: only writes need it here.
        passed = self.filter(record)
        if passed:
            self.emit(record)
        return bool(passed)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # logging's contract: a bad record is reported, never raised
            self.handleError(record)
            return
        if self.interval <= 0 or record.levelno >= logging.WARNING:
            self._write(line)
            return
        with self._queued_lock:
            self._queued.append(line)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="log-writer", daemon=True)
                self._writer.start()
        if not self._wake.is_set():
            self._wake.set()

    def _write(self, line: str = "") -> None:
        # Under the handler's lock, so that what was queued first is written first.
        with self.lock:
            with self._queued_lock:
                queued, self._queued = self._queued, []
            text = "".join(queued) + line
            if not text:
                return
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:
                self.handleError(_UNWRITTEN)

    def _write_queued(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)
            self._wake.clear()
            self._write()

    def flush(self) -> None:
        self._write()
