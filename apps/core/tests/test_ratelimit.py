"""Rate limits in the database: token buckets, exponential pauses, and rates as settings spell them."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.core.models import RateLimitCounter
from apps.core.ratelimit import (
    REFUSALS,
    Attempt,
    RateLimited,
    attempt_pause,
    attempt_reserve,
    attempts_reset,
    rate_limit_counters_prune,
    rate_limit_take,
)
from apps.core.rates import Backoff, Rate
from apps.core.testing import ManualClock

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    fake = ManualClock()
    monkeypatch.setattr("apps.core.ratelimit.timezone.now", fake)
    return fake


@pytest.mark.parametrize(
    ("text", "rate"),
    [("30/minute", Rate(30, 60)), ("100/hour", Rate(100, 3600)), ("5/15min", Rate(5, 900)), ("1/s", Rate(1, 1))],
)
def test_rates_are_read_as_requests_per_period(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "30", "0/minute", "30/fortnight", "-1/hour", "30/minute/x"])
def test_a_malformed_rate_is_a_configuration_error(text):
    with pytest.raises(ImproperlyConfigured, match="is not a rate"):
        Rate.parse(text)


def test_a_bucket_allows_a_burst_then_one_request_per_share_of_the_period(clock):
    rate = Rate(3, 60)
    for _ in range(3):
        rate_limit_take(scope="s", key="10.0.0.1", rate=rate)
    with pytest.raises(RateLimited) as refused:
        rate_limit_take(scope="s", key="10.0.0.1", rate=rate)
    assert refused.value.wait == 20
    clock.advance(20)
    rate_limit_take(scope="s", key="10.0.0.1", rate=rate)
    with pytest.raises(RateLimited):
        rate_limit_take(scope="s", key="10.0.0.1", rate=rate)


def test_buckets_of_other_keys_and_scopes_are_apart(clock):
    rate = Rate(1, 60)
    rate_limit_take(scope="s", key="a", rate=rate)
    rate_limit_take(scope="s", key="b", rate=rate)
    rate_limit_take(scope="t", key="a", rate=rate)
    assert RateLimitCounter.objects.count() == 3


def test_keys_are_kept_as_digests(clock):
    rate_limit_take(scope="login:account", key="ada@example.com", rate=Rate(5, 60))
    assert "ada" not in RateLimitCounter.objects.get().key_digest


@pytest.mark.parametrize(("attempts", "pause"), [(0, 0), (2, 0), (3, 1), (4, 2), (5, 4), (8, 30), (50, 30)])
def test_the_pause_doubles_after_the_free_attempts_up_to_the_maximum(attempts, pause):
    assert attempt_pause(attempts, Backoff(free=3, base=1, maximum=30, window=3600)) == pause


def test_a_refused_attempt_counts_against_none_of_its_keys(clock):
    tight = Backoff(free=1, base=10, maximum=10, window=3600)
    loose = Backoff(free=100, base=10, maximum=10, window=3600)
    attempt_reserve(Attempt("pair", "k", tight), Attempt("account", "k", loose))
    with pytest.raises(RateLimited):
        attempt_reserve(Attempt("pair", "k", tight), Attempt("account", "k", loose))
    assert RateLimitCounter.objects.get(scope="account").attempts == 1


def test_a_reset_forgets_the_attempts(clock):
    backoff = Backoff(free=1, base=10, maximum=10, window=3600)
    attempt_reserve(Attempt("pair", "k", backoff))
    attempts_reset(scope="pair", key="k")
    attempt_reserve(Attempt("pair", "k", backoff))


def test_counters_untouched_for_long_are_pruned():
    rate_limit_take(scope="s", key="old", rate=Rate(5, 60))
    rate_limit_take(scope="s", key="new", rate=Rate(5, 60))
    old = RateLimitCounter.objects.order_by("pk").first()
    RateLimitCounter.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    assert rate_limit_counters_prune(older_than=timedelta(hours=1)) == 1
    assert list(RateLimitCounter.objects.values_list("pk", flat=True)) != [old.pk]
    assert RateLimitCounter.objects.count() == 1


def test_a_free_attempt_passes_after_a_concurrent_one_wrote_a_later_time(clock):
    """Requests read the time once their rows are locked: one that waited on the lock while another
    (which read the time later, and got the lock first) counted its attempt is not refused for a
    quiet time that would come out negative."""
    backoff = Backoff(free=3, base=60, maximum=900, window=3600)
    attempt = Attempt(scope="login:address", key="2001:db8::1", backoff=backoff)
    attempt_reserve(attempt)
    # The other request's write, half a second after this request's clock reading.
    RateLimitCounter.objects.update(updated_at=clock.now + timedelta(seconds=0.5))
    attempt_reserve(attempt)
    attempt_reserve(attempt)
    assert RateLimitCounter.objects.get().attempts == 3
    with pytest.raises(RateLimited):
        attempt_reserve(attempt)


def test_each_refusal_is_counted_by_the_scope_that_refused_it(clock):
    refusals = REFUSALS
    before = [refusals.labels(scope=scope)._value.get() for scope in ("bucket", "pair", "account")]
    rate_limit_take(scope="bucket", key="10.0.0.1", rate=Rate(1, 60))
    with pytest.raises(RateLimited):
        rate_limit_take(scope="bucket", key="10.0.0.1", rate=Rate(1, 60))
    tight = Backoff(free=1, base=10, maximum=10, window=3600)
    loose = Backoff(free=100, base=10, maximum=10, window=3600)
    attempt_reserve(Attempt("pair", "k", tight), Attempt("account", "k", loose))
    with pytest.raises(RateLimited):
        attempt_reserve(Attempt("pair", "k", tight), Attempt("account", "k", loose))
    after = [refusals.labels(scope=scope)._value.get() for scope in ("bucket", "pair", "account")]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 0]


def test_a_counter_is_made_or_found_and_locked_in_one_statement(clock, django_assert_num_queries):
    """Made, then found: one statement each time, so nothing can delete the row between a creation
    and a lock (a second statement's read of a row deleted meanwhile was a 500)."""
    backoff = Backoff(free=3, base=1, maximum=60, window=3600)
    for expected in (1, 2):
        with django_assert_num_queries(4) as captured:  # a savepoint, its release, and between them:
            attempt_reserve(Attempt("client-token:client", "orders", backoff))
        verbs = [query["sql"].split()[0] for query in captured.captured_queries]
        assert verbs == ["SAVEPOINT", "INSERT", "UPDATE", "RELEASE"]  # made or found and locked; saved
        counter = RateLimitCounter.objects.get(scope="client-token:client")
        assert (counter.attempts, counter.updated_at) == (expected, clock.now)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions need PostgreSQL")
def test_a_counter_deleted_while_another_request_waits_for_its_lock_is_made_again():
    """One request holds the counter's lock and deletes it (it proved itself); another waits for that
    lock meanwhile. Once the first commits, the waiting one counts its attempt on a fresh counter."""
    backoff = Backoff(free=3, base=1, maximum=60, window=3600)
    attempt_reserve(Attempt("client-token:client", "orders", backoff))
    locked, done, errors = threading.Event(), threading.Event(), []

    def waiting_request() -> None:
        try:
            locked.wait(timeout=30)
            attempt_reserve(Attempt("client-token:client", "orders", backoff))
        except Exception as error:  # the thread's failure is the test's
            errors.append(repr(error))
        finally:
            done.set()
            connections.close_all()

    waiter = threading.Thread(target=waiting_request)
    waiter.start()
    with transaction.atomic():
        RateLimitCounter.objects.select_for_update().get(scope="client-token:client")
        attempts_reset(scope="client-token:client", key="orders")
        locked.set()
        with connection.cursor() as cursor:
            for _ in range(300):  # until the other request waits on the lock, 30 s at most
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the other request never waited for the counter's lock")
        assert not done.is_set()
    waiter.join(timeout=30)
    assert (waiter.is_alive(), errors) == (False, [])
    assert RateLimitCounter.objects.get(scope="client-token:client").attempts == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions need PostgreSQL")
def test_attempts_and_resets_of_one_key_from_many_threads_never_fail():
    """Service clients starting together: each thread reserves an attempt of one client, then resets
    it (the secret was right), 40 times. When the counter was made and locked by two statements, a
    reset committed between them made the lock's read find nothing (DoesNotExist, then a retry that
    six threads could exhaust)."""
    backoff = Backoff(free=1000, base=1, maximum=1, window=3600)
    errors = []

    def client_starts() -> None:
        try:
            for _ in range(40):
                attempt_reserve(Attempt("client-token:client", "orders", backoff))
                attempts_reset(scope="client-token:client", key="orders")
        except Exception as error:  # any failure of a thread is the test's failure
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client_starts) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
