"""Rate limits that hold across every worker and pod: the service's database is the shared store.

Two shapes, both decided under a row lock (taken by the statement that makes or finds the counter
on PostgreSQL; SQLite's write transactions are serial), so that concurrent requests can never all
read "one left" and all pass:

- `rate_limit_take`: a token bucket. At most `count` requests per `period` seconds per key, in
  bursts of up to `count`: what bounds the CPU one client address can spend on password hashing.
- `attempt_reserve`: an exponential delay. The first `free` attempts pass; each one after must
  come later than the one before by a pause that doubles (`base`, 2 x `base`, ... up to
  `maximum`). An attempt is counted before its outcome is known, and `attempts_reset` clears the
  count on success: parallel guesses each take a turn of their own. Nothing ever locks a key for
  good; attempts are forgotten after `window` seconds without one.

Refusals raise DRF's Throttled: a 429 problem with Retry-After, counted in `rate_limit_refusals_total`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import router, transaction
from django.utils import timezone
from prometheus_client import Counter
from rest_framework.exceptions import Throttled

from apps.core.models import RateLimitCounter
from apps.core.rates import Backoff, Rate


class RateLimited(Throttled):
    default_detail = "Too many requests."


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


_COUNTER_FIELDS = [field for field in RateLimitCounter._meta.concrete_fields if not field.primary_key]
_RETURNED_FIELDS = [RateLimitCounter._meta.pk, *_COUNTER_FIELDS]


def _counter_upsert(connection) -> str:
    """The one statement that makes the counter or, when it exists, locks it, returning its row,
    written once per database."""
    sql = _UPSERTS.get(connection.alias)
    if sql is None:
        quote = connection.ops.quote_name
        meta = RateLimitCounter._meta
        table = quote(meta.db_table)
        scope, key = (quote(meta.get_field(name).column) for name in ("scope", "key_digest"))
        inserted = ", ".join(quote(field.column) for field in _COUNTER_FIELDS)
        returned = ", ".join(quote(field.column) for field in _RETURNED_FIELDS)
        values = ", ".join(["%s"] * len(_COUNTER_FIELDS))
        # Names from the model's own metadata, quoted; the values are parameters.
        sql = _UPSERTS[connection.alias] = (
            f"INSERT INTO {table} ({inserted}) VALUES ({values}) "  # noqa: S608
            f"ON CONFLICT ({scope}, {key}) DO UPDATE SET {scope} = EXCLUDED.{scope} RETURNING {returned}"
        )
    return sql


_UPSERTS: dict[str, str] = {}


def _counter_locked(scope: str, key: str, *, now: datetime, tokens: float = 0) -> RateLimitCounter:
    """The counter row for (scope, key), created if missing, locked until the transaction ends.

    One statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) creates the row or locks the one
    there: nothing can delete it between a creation and a lock. A request that proved itself
    (attempts_reset) or the prune may delete it while this one waits for its lock; PostgreSQL then
    inserts a fresh counter, as the next request after the reset would start from. On SQLite the
    write transaction (BEGIN IMMEDIATE) already excludes every other writer."""
    alias = router.db_for_write(RateLimitCounter)
    connection = transaction.get_connection(alias)
    made = RateLimitCounter(scope=scope, key_digest=_digest(key), tokens=tokens, attempts=0, updated_at=now)
    params = [field.get_db_prep_save(getattr(made, field.attname), connection) for field in _COUNTER_FIELDS]
    # A raw queryset makes the instance from the returned row, the database's converters applied.
    [counter] = RateLimitCounter.objects.db_manager(alias).raw(_counter_upsert(connection), params)
    return counter


REFUSALS = Counter(
    "rate_limit_refusals",
    "Requests refused by a rate limit or a guessing delay (429), by scope (login:address, login:account, ...).",
    ["scope"],
)


def _refuse(wait: float, detail: str, *, scope: str):
    REFUSALS.labels(scope=scope).inc()  # at once: the refusal stands even though its transaction rolls back
    raise RateLimited(wait=max(1, math.ceil(wait)), detail=detail)


def rate_limit_take(*, scope: str, key: str, rate: Rate, detail: str = "Too many requests from this address.") -> None:
    """Spend one request of `key`'s bucket, or raise RateLimited with when the next one is allowed."""
    with transaction.atomic():
        counter = _counter_locked(scope, key, now=timezone.now(), tokens=rate.count)
        # The time is read once the row is ours: read before, it could be older than what the
        # request served while this one waited for the lock wrote, and time would run backwards.
        now = timezone.now()
        refill = max(0.0, (now - counter.updated_at).total_seconds()) * rate.count / rate.period
        tokens = min(float(rate.count), counter.tokens + refill)
        if tokens < 1:
            _refuse((1 - tokens) * rate.period / rate.count, detail, scope=scope)
        counter.tokens = tokens - 1
        counter.updated_at = now
        counter.save(update_fields=["tokens", "updated_at"])


def attempt_pause(attempts: int, backoff: Backoff) -> float:
    """Seconds the next attempt must wait after the last one, `attempts` having been made."""
    if attempts < backoff.free:
        return 0.0
    return min(backoff.maximum, backoff.base * 2 ** (attempts - backoff.free))


@dataclass(frozen=True)
class Attempt:
    """One count an attempt is made against: a scope, a key, its backoff and what a refusal says."""

    scope: str
    key: str
    backoff: Backoff
    detail: str = "Too many attempts."


def attempt_reserve(*attempts: Attempt) -> None:
    """Count one attempt against every one of `attempts`, or against none of them and raise
    RateLimited (the longest wait) if it comes before the pause of any one has passed."""
    with transaction.atomic():
        # Locked in one order, whoever asks: two requests never wait on each other's second row.
        ordered = sorted(attempts, key=lambda attempt: (attempt.scope, _digest(attempt.key)))
        counters = [_counter_locked(attempt.scope, attempt.key, now=timezone.now()) for attempt in ordered]
        # Read once every row is ours (see rate_limit_take): a `now` older than the last attempt
        # the counter saw would make the quiet time negative and refuse a free attempt.
        now = timezone.now()
        refusals = []
        for attempt, counter in zip(ordered, counters, strict=True):
            quiet = max(0.0, (now - counter.updated_at).total_seconds())
            counter.attempts = 0 if quiet > attempt.backoff.window else counter.attempts
            pause = attempt_pause(counter.attempts, attempt.backoff)
            if pause > quiet:
                refusals.append((pause - quiet, attempt.detail, attempt.scope))
        if refusals:
            wait, detail, scope = max(refusals)
            _refuse(wait, detail, scope=scope)
        for counter in counters:
            counter.attempts += 1
            counter.updated_at = now
            counter.save(update_fields=["attempts", "updated_at"])


def attempts_reset(*, scope: str, key: str) -> None:
    """Forget `key`'s attempts (it proved itself: a correct password)."""
    RateLimitCounter.objects.filter(scope=scope, key_digest=_digest(key)).delete()


def rate_limit_counters_prune(*, older_than: timedelta) -> int:
    """Delete counters untouched for longer than any limit's period or window (retention)."""
    deleted, _ = RateLimitCounter.objects.filter(updated_at__lt=timezone.now() - older_than).delete()
    return deleted
