"""The platform's own metrics (apps.core.metrics): counted on commit, state read at scrape time, build
info, and the /metrics server of a relay or worker, against a real database and a real socket."""

import socket
import uuid
from datetime import timedelta

import pytest
import requests
from django.db import DatabaseError, transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.core import metrics, outbox
from apps.orders.models import OrderEvent

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000d1")


def samples(page: bytes | str) -> dict[tuple[str, tuple], float]:
    text = page.decode() if isinstance(page, bytes) else page
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(page, name: str, **labels) -> float | None:
    return samples(page).get((name, tuple(sorted(labels.items()))))


def test_a_counter_starts_every_listed_label_combination_at_zero():
    made = metrics.counter("test_started_things", "t", {"outcome": ("ok", "bad"), "kind": ("a",)})
    page = metrics.exposition(with_state=False)
    assert value(page, "test_started_things_total", outcome="ok", kind="a") == 0
    assert value(page, "test_started_things_total", outcome="bad", kind="a") == 0
    made.labels(outcome="ok", kind="a").inc()
    assert value(metrics.exposition(with_state=False), "test_started_things_total", outcome="ok", kind="a") == 1


def test_an_open_ended_label_has_no_series_before_its_first_count():
    made = metrics.counter("test_open_things", "t", {"outcome": ("ok",), "currency": ()})
    assert not [key for key in samples(metrics.exposition(with_state=False)) if key[0] == "test_open_things_total"]
    made.labels(outcome="ok", currency="EUR").inc(250)
    assert value(metrics.exposition(with_state=False), "test_open_things_total", outcome="ok", currency="EUR") == 250


def test_a_count_after_commit_is_made_when_the_transaction_commits(django_capture_on_commit_callbacks):
    made = metrics.counter("test_committed_things", "t")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        metrics.count_after_commit(made, 3)
        assert made._value.get() == 0  # not before the commit
    assert made._value.get() == 3


def test_a_count_in_a_rolled_back_transaction_is_never_made(django_capture_on_commit_callbacks):
    made = metrics.counter("test_rolled_back_things", "t", {"outcome": ("ok",)})

    def rolled_back():
        with transaction.atomic():
            metrics.count_after_commit(made, outcome="ok")
            raise RuntimeError("rolled back")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        rolled_back()
    assert (callbacks, made.labels(outcome="ok")._value.get()) == ([], 0)


def test_every_scrape_has_the_build_info_of_the_process(settings):
    settings.APP_VERSION, settings.GIT_SHA, settings.DEPLOY_COLOR = "1.2.3", "abc1234", "green"
    page = metrics.exposition(with_state=False)
    labels = {"service": settings.SERVICE, "version": "1.2.3", "revision": "abc1234", "color": "green"}
    assert value(page, "platform_build_info", **labels) == 1


def test_the_outbox_backlog_is_read_from_the_database_at_each_scrape():
    label = OrderEvent._meta.label_lower
    OrderEvent.objects.all().delete()
    assert value(metrics.exposition(with_state=True), "outbox_pending_events", outbox=label) == 0
    assert value(metrics.exposition(with_state=True), "outbox_oldest_pending_event_age_seconds", outbox=label) == 0
    with transaction.atomic():
        old, new = (
            outbox.outbox_event_add(
                OrderEvent, event_type="order.paid", user_id=USER, aggregate_id=uuid.uuid4(), data={"n": 1}
            )
            for _ in range(2)
        )
    OrderEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    page = metrics.exposition(with_state=True)
    assert value(page, "outbox_pending_events", outbox=label) == 2
    assert 600 <= value(page, "outbox_oldest_pending_event_age_seconds", outbox=label) < 660
    OrderEvent.objects.filter(pk=old.pk).update(delivered_at=timezone.now())
    OrderEvent.objects.filter(pk=new.pk).update(failed_at=timezone.now())  # failed for good: not backlog
    page = metrics.exposition(with_state=True)
    assert (
        value(page, "outbox_pending_events", outbox=label),
        value(page, "outbox_oldest_pending_event_age_seconds", outbox=label),
    ) == (0, 0)


def test_a_state_reader_whose_database_fails_is_left_out_and_counted():
    def broken():
        raise DatabaseError("connection refused")

    metrics.state_reader_register("test-broken", broken)
    try:
        before = metrics.STATE_READ_FAILURES.labels(reader="test-broken")._value.get()
        page = metrics.exposition(with_state=True)
        assert value(page, "outbox_pending_events", outbox=OrderEvent._meta.label_lower) is not None  # the others stay
        assert value(page, "platform_state_read_failures_total", reader="test-broken") == before + 1
    finally:
        metrics._state_readers.pop("test-broken")


def test_a_scrape_without_state_reads_no_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        metrics.exposition(with_state=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_worker_serves_its_counters_and_build_info_on_its_metrics_port():
    made = metrics.counter("test_worker_things", "t")
    made.inc(2)
    port = _free_port()
    server = metrics.worker_serve(metrics_port=port, metrics_host="127.0.0.1")
    try:
        page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert value(page, "test_worker_things_total") == 2
    assert [key for key in samples(page) if key[0] == "platform_build_info"] != []
    assert [key for key in samples(page) if key[0] == "outbox_pending_events"] == []  # the web process's


def test_a_worker_without_a_metrics_port_serves_none():
    assert metrics.worker_serve(metrics_port=0, metrics_host="127.0.0.1") is None
