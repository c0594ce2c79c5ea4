"""Rows that workers take turns on: claimed in batches under a lease, worked outside any transaction,
and recorded only by the worker holding them. The outbox relay and the email worker are built on it.

A queue is a model with `available_at` (not before this time: the next retry, or the end of a
lease) and `claimed_by` (the worker holding the row, empty when none). Times are the database's
clock (`Now()`) on both sides of every comparison, so workers on hosts with skewed clocks agree.

Claiming takes a batch of due rows in one short transaction: `SELECT ... FOR UPDATE SKIP LOCKED` on
PostgreSQL, so two workers never take the same row and neither waits; SQLite has no row locks
(Django ignores select_for_update there), but the settings open every transaction with BEGIN
IMMEDIATE, which takes the database's write lock before the SELECT, so the select-and-lease is
serialized across processes instead. Before working a row whose lease could run out during the
work, the worker renews that row's lease; a renewal that matches nothing means the lease ran out and
another worker took the row, which is then skipped. A row whose lease from the claim still covers
its work is worked without that statement (`BatchLease`): under a live lease no other worker can
claim it, and neither `release` nor an operator's retry touches it. Recording the outcome matches
`claimed_by` too, so a worker whose lease ran out can never overwrite the holder's work. Rows of a
batch the worker does not reach (it was told to stop, or the target stopped answering) are released
at once for the next pass or the next worker.
"""

from __future__ import annotations

import logging
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.db import DatabaseError, close_old_connections, connection, models, transaction
from django.db.models.functions import Now

logger = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def in_seconds(seconds: float) -> models.Expression:
    """The database's now plus `seconds`."""
    return Now() + timedelta(seconds=seconds)


def backoff_seconds(attempts: int, *, base: float, maximum: float) -> float:
    """Exponential backoff with jitter after the `attempts`-th failure: between half and all of
    min(maximum, base * 2 ** (attempts - 1)), so workers retrying together spread out."""
    ceiling = min(maximum, base * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)


def claim(due: models.QuerySet, *, worker: str, batch_size: int, lease_seconds: float) -> list:
    """Lease up to `batch_size` rows of `due` whose time has come to `worker`; their primary keys,
    earliest first."""
    model = due.model
    with transaction.atomic():
        rows = due.filter(available_at__lte=Now()).order_by("available_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        ids = list(rows.values_list("pk", flat=True)[:batch_size])
        if ids:
            model.objects.filter(pk__in=ids).update(claimed_by=worker, available_at=in_seconds(lease_seconds))
    return ids


def lease_renew(model: type[models.Model], pk, *, worker: str, lease_seconds: float) -> bool:
    """Extend `worker`'s lease on one row; False if the worker no longer holds it."""
    return bool(model.objects.filter(pk=pk, claimed_by=worker).update(available_at=in_seconds(lease_seconds)))


# What a row's lease must still hold beyond its work's own budget for the row to be worked without
# renewing it: the outcome's record, and this process waiting to be scheduled.
RENEWAL_MARGIN_SECONDS = 5.0


class BatchLease:
    """The lease one claim gives every row of its batch, timed on this process's monotonic clock from
    just before the claim. The claim sets each row's lease to the database's `Now()` plus `seconds`,
    and that `Now()` is no earlier than this start, so every row of the batch is leased until at
    least `started + seconds`. Make it before calling `claim`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()

    def covers(self, work_seconds: float) -> bool:
        """Whether a row of the batch, started now, stays leased through `work_seconds` of work and
        RENEWAL_MARGIN_SECONDS more."""
        return time.monotonic() + work_seconds + RENEWAL_MARGIN_SECONDS <= self.started + self.seconds


def lease_hold(model: type[models.Model], pk, *, worker: str, lease: BatchLease, work_seconds: float) -> bool:
    """Whether `worker` still holds row `pk` of a batch it claimed under `lease`, for `work_seconds` of
    work: without a statement while the claim's lease covers that work; otherwise by renewing the
    row's lease (`lease_renew`), False when it no longer holds the row."""
    return lease.covers(work_seconds) or lease_renew(model, pk, worker=worker, lease_seconds=lease.seconds)


def release(model: type[models.Model], pks: Iterable, *, worker: str) -> int:
    """Hand rows `worker` claimed but did not work back to the queue, due now."""
    return model.objects.filter(pk__in=list(pks), claimed_by=worker).update(claimed_by="", available_at=Now())


def record(model: type[models.Model], pk, *, worker: str, **changes) -> bool:
    """Write the outcome of working one row and end the lease, only if `worker` still holds it."""
    return bool(model.objects.filter(pk=pk, claimed_by=worker).update(claimed_by="", **changes))


class StopSignal:
    """Set by SIGTERM or SIGINT (Kubernetes, honcho, Ctrl-C); workers look at it before each row."""

    def __init__(self):
        self._stopping = False

    def install(self) -> StopSignal:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._set)
        return self

    def _set(self, *_) -> None:
        self._stopping = True

    def __call__(self) -> bool:
        return self._stopping


def worker_loop(work_pass: Callable[[], bool], *, once: bool, poll_interval: float, stop: Callable[[], bool]) -> None:
    """Run `work_pass` until stopped; it answers whether it should run again at once (it worked a
    full pass), otherwise the loop waits `poll_interval`. `once`: exit after the first idle pass."""
    while not stop():
        if not connection.in_atomic_block:  # never the connection a caller's transaction is using
            close_old_connections()  # a database restart costs one failed pass, not the worker
        try:
            again = work_pass()
        except DatabaseError:
            logger.exception("worker pass failed; retrying after the poll interval")
            again = False
        if stop() or (once and not again):
            return
        if not again:
            deadline = time.monotonic() + poll_interval
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.1, poll_interval))
