"""The platform's own metrics, beside django-prometheus' database ones: each API request's
(`RequestMetrics`), what happened to the business (counters, counted once the change they report is
committed) and what state it is in now (gauges read from the database at scrape time), plus a
build-info series on every process.

Counters live in the module that does the work (orders placed in apps/orders/services.py, ...) and
are made with `counter()`, which starts every known label value at zero so a rate is 0, not
missing, before the first event. Gauges of state register a reader here: each scrape of a web
process reads them from its service's database, so every replica reports the same numbers and
rules aggregate them with `max by (service)`. A relay or worker serves its counters and build info
on a port of its own (`worker_serve()`), without the database gauges, which are the web process's.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

import prometheus_client
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Count, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.core.metrics_files import collect_locked, multiproc_directory

logger = logging.getLogger(__name__)


def counter(name: str, documentation: str, labels: dict[str, Iterable[str]] | None = None) -> Counter:
    """A counter (exposed as `<name>_total`) with these labels, every combination of the listed
    values exposed from the start at 0; a label listed with no values (open-ended, like a currency)
    leaves the series to appear with their first count."""
    labels = labels or {}
    made = Counter(name, documentation, list(labels))
    for values in itertools.product(*labels.values()) if labels else ():
        made.labels(*values)
    return made


def count_after_commit(made: Counter, amount: float = 1, **labels: str) -> None:
    """Count an event once the transaction that records it commits (at once outside a transaction):
    a rolled-back change is never counted, a committed one always is."""
    child = made.labels(**labels) if labels else made
    transaction.on_commit(lambda: child.inc(amount))


def gauge(name: str, documentation: str, samples: Iterable[tuple[dict[str, str], float]]) -> GaugeMetricFamily:
    """A gauge family for a state reader: `samples` are (labels, value) pairs."""
    samples = list(samples)
    family = GaugeMetricFamily(name, documentation, labels=list(samples[0][0]) if samples else [])
    for labels, value in samples:
        family.add_metric(list(labels.values()), value)
    return family


def backlog(queryset: QuerySet) -> tuple[int, float]:
    """How many rows wait in `queryset` and the age in seconds of the oldest (by `created_at`); 0 when none."""
    found = queryset.aggregate(rows=Count("pk"), oldest=Min("created_at"))
    age = max((timezone.now() - found["oldest"]).total_seconds(), 0.0) if found["oldest"] else 0.0
    return found["rows"], age


_state_readers: dict[str, Callable[[], Iterable[Metric]]] = {}


def state_reader_register(name: str, read: Callable[[], Iterable[Metric]]) -> None:
    """Add gauges read from the database to every scrape of a web process: `read()` returns metric
    families (made with `gauge()`); apps register theirs in AppConfig.ready."""
    _state_readers[name] = read
    STATE_READ_FAILURES.labels(reader=name)  # a failure count of 0 from the start


class _StateCollector:
    """The registered state readers; a database that does not answer leaves a reader's gauges out
    of the scrape (the HTTP metrics still go out) and counts `platform_state_read_failures_total`."""

    def collect(self) -> Iterator[Metric]:
        for name, read in _state_readers.items():
            try:
                families = list(read())
            except DatabaseError as error:
                STATE_READ_FAILURES.labels(reader=name).inc()
                logger.warning("state unreadable", extra={"reader": name, "error": type(error).__name__})
                continue
            yield from families


class _BuildInfo:
    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "platform_build_info",
            "1 for the build this process runs: service, version, git revision and blue/green color.",
            labels=["service", "version", "revision", "color"],
        )
        family.add_metric([settings.SERVICE, settings.APP_VERSION, settings.GIT_SHA, settings.DEPLOY_COLOR], 1)
        yield family


class _Forwarded:
    """The default registry's metrics, for a registry of our own (no multiprocess directory)."""

    def collect(self) -> Iterator[Metric]:
        yield from prometheus_client.REGISTRY.collect()


STATE_READ_FAILURES = Counter(
    "platform_state_read_failures", "Scrapes in which a state reader could not read the database.", ["reader"]
)


# --- HTTP: what each API request did ---------------------------------------------------------------
# The series dashboards, recording rules, SLO alerts and the release gate read, under the names
# django-prometheus gives them (a counter is exposed with `_total` added), and nothing else: every
# series costs each request a write to the worker's metrics file.
HTTP_REQUESTS_BY_METHOD = Counter("django_http_requests_total_by_method", "Requests by method.", ["method"])
HTTP_REQUESTS_BY_VIEW = Counter(
    "django_http_requests_total_by_view_transport_method",
    "Requests that reached a view, by view, transport and method.",
    ["view", "transport", "method"],
)
HTTP_RESPONSES_BY_STATUS = Counter("django_http_responses_total_by_status", "Responses by status.", ["status"])
HTTP_LATENCY_BY_VIEW = Histogram(
    "django_http_requests_latency_seconds_by_view_method",
    "Time in the view and the middleware inside this one (apps.core.metrics.RequestMetrics), by view and method.",
    ["view", "method"],
    buckets=settings.PROMETHEUS_LATENCY_BUCKETS,
)
HTTP_EXCEPTIONS_BY_TYPE = Counter(
    "django_http_exceptions_total_by_type", "Exceptions a view raised, by their type.", ["type"]
)
HTTP_EXCEPTIONS_BY_VIEW = Counter(
    "django_http_exceptions_total_by_view", "Exceptions a view raised, by view.", ["view"]
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"})
_UNNAMED_VIEW = "<unnamed view>"


def _view_of(request: HttpRequest) -> str:
    match = request.resolver_match
    return (match.view_name or _UNNAMED_VIEW) if match is not None else _UNNAMED_VIEW


class RequestMetrics:
    """Middleware: each request counted by method, by view and by status, and timed by view.

    A labelled series is looked up once per process and kept: `labels()` validates and locks on
    every call, and an order read would pay that four times. Label values are bounded: methods
    outside HTTP's are one value, views are the URL patterns' names, statuses are HTTP's.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._series: dict[tuple, object] = {}

    def _child(self, metric, *values: str):
        key = (metric, values)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = metric.labels(*values)
        return child

    def __call__(self, request: HttpRequest) -> HttpResponse:
        method = request.method if request.method in _METHODS else "<invalid method>"
        self._child(HTTP_REQUESTS_BY_METHOD, method).inc()
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        view = _view_of(request)
        if request.resolver_match is not None:
            transport = "https" if request.is_secure() else "http"
            self._child(HTTP_REQUESTS_BY_VIEW, view, transport, method).inc()
        self._child(HTTP_RESPONSES_BY_STATUS, str(response.status_code)).inc()
        self._child(HTTP_LATENCY_BY_VIEW, view, method).observe(elapsed)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        self._child(HTTP_EXCEPTIONS_BY_TYPE, type(exception).__name__).inc()
        self._child(HTTP_EXCEPTIONS_BY_VIEW, _view_of(request)).inc()


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    directory = multiproc_directory()
    if directory is None:
        registry.register(_Forwarded())
    else:
        multiprocess.MultiProcessCollector(registry, path=str(directory))
    registry.register(_BuildInfo())
    return registry


_STATE_REGISTRY = CollectorRegistry(auto_describe=False)
_STATE_REGISTRY.register(_StateCollector())


def exposition(*, with_state: bool) -> bytes:
    """This process's metrics in the text format: its counters and histograms (every gunicorn
    worker's, read while no exited worker's files are being merged), build info, and with
    `with_state` the database gauges, read outside that lock so a slow database never holds it."""
    # State first: a reader that fails is counted in this very scrape.
    state = prometheus_client.generate_latest(_STATE_REGISTRY) if with_state else b""
    directory = multiproc_directory()
    registry = _process_registry()
    if directory is None:
        return prometheus_client.generate_latest(registry) + state
    return collect_locked(directory, lambda: prometheus_client.generate_latest(registry)) + state


def serve(*, port: int, host: str) -> WSGIServer:
    """Serve this process's `/metrics` (counters and build info) on `host:port` from a daemon thread:
    how a relay or worker, which has no web server, is scraped."""
    server, _thread = prometheus_client.start_http_server(port, addr=host, registry=_process_registry())
    return server


def worker_arguments_add(parser) -> None:
    """`--metrics-port` and `--metrics-host` for a long-running management command (a relay, a worker)."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("METRICS_PORT") or 0),
        help="serve /metrics on this port (default: METRICS_PORT; 0, the default, serves none)",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("METRICS_HOST", "0.0.0.0"),  # noqa: S104 (scraped from another pod)
        help="address to serve /metrics on (default: METRICS_HOST, else every interface)",
    )


def worker_serve(*, metrics_port: int, metrics_host: str) -> WSGIServer | None:
    """Start a worker's /metrics server when it was asked for one (`worker_arguments_add`)."""
    if not metrics_port:
        return None
    return serve(port=metrics_port, host=metrics_host)
