"""Each API request's metrics (apps.core.metrics.RequestMetrics), read from /metrics as Prometheus
reads them: the series the dashboards, rules and release gate query, under their names, with their
labels, and nothing a request would pay for that nothing reads."""

import pytest
from django.test import Client

from apps.core.tests.test_metrics import samples, value

pytestmark = [pytest.mark.django_db, pytest.mark.urls("apps.core.tests.urls")]

SCHEMA = {"view": "schema", "method": "GET"}


def scrape() -> bytes:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return response.content


def count(page, name: str, **labels) -> float:
    return value(page, name, **labels) or 0.0


def grew(before, after, name: str, **labels) -> float:
    """How much a series grew between two scrapes (a series not yet there counts as 0)."""
    return count(after, name, **labels) - count(before, name, **labels)


def test_a_request_is_counted_by_method_view_and_status_and_timed_by_view():
    before = scrape()
    assert Client().get("/api/schema/").status_code == 200
    after = scrape()
    assert grew(before, after, "django_http_requests_total_by_method_total", method="GET") == 1
    assert (
        grew(before, after, "django_http_requests_total_by_view_transport_method_total", transport="http", **SCHEMA)
        == 1
    )
    assert grew(before, after, "django_http_responses_total_by_status_total", status="200") == 1
    assert grew(before, after, "django_http_requests_latency_seconds_by_view_method_count", **SCHEMA) == 1
    assert grew(before, after, "django_http_requests_latency_seconds_by_view_method_bucket", le="+Inf", **SCHEMA) == 1
    assert grew(before, after, "django_http_requests_latency_seconds_by_view_method_sum", **SCHEMA) > 0


def test_a_path_no_view_matches_counts_its_status_but_no_view():
    before = scrape()
    assert Client().get("/no/such/path").status_code == 404
    after = scrape()
    unnamed = {"view": "<unnamed view>", "method": "GET"}
    assert grew(before, after, "django_http_responses_total_by_status_total", status="404") == 1
    assert grew(before, after, "django_http_requests_latency_seconds_by_view_method_count", **unnamed) == 1
    views = {labels for name, labels in samples(after) if name.endswith("by_view_transport_method_total")}
    assert all(dict(labels)["view"] != "<unnamed view>" for labels in views), views


def test_a_method_outside_http_is_one_label_value():
    response = Client().generic("BREW", "/api/schema/")
    assert response.status_code == 405
    page = scrape()
    methods = {dict(labels)["method"] for name, labels in samples(page) if name.startswith("django_http_requests")}
    assert "BREW" not in methods
    assert count(page, "django_http_requests_total_by_method_total", method="<invalid method>") >= 1


def test_an_exception_a_view_raises_is_counted_by_type_and_view():
    crash = {"view": "apps.core.tests.urls.crash"}
    before = scrape()
    assert Client(raise_request_exception=False).get("/test/crash").status_code == 500
    after = scrape()
    assert grew(before, after, "django_http_exceptions_total_by_type_total", type="RuntimeError") == 1
    assert grew(before, after, "django_http_exceptions_total_by_view_total", **crash) == 1
    assert grew(before, after, "django_http_responses_total_by_status_total", status="500") == 1


def test_probes_and_scrapes_are_not_counted():
    before = scrape()
    for path in ("/healthz", "/readyz", "/version", "/metrics"):
        Client().get(path)
    after = scrape()
    assert grew(before, after, "django_http_requests_total_by_method_total", method="GET") == 0


def test_only_the_series_something_reads_are_exposed():
    Client().get("/api/schema/")
    # A counter's or histogram's `_created` sample is left out: multiprocess mode, as served, has none.
    names = {name for name, _ in samples(scrape()) if not name.endswith("_created")}
    families = {
        next((name.removesuffix(end) for end in ("_bucket", "_count", "_sum") if name.endswith(end)), name)
        for name in names
    }
    http = {name for name in families if name.startswith("django_http_")}
    assert http <= {
        "django_http_requests_total_by_method_total",
        "django_http_requests_total_by_view_transport_method_total",
        "django_http_responses_total_by_status_total",
        "django_http_requests_latency_seconds_by_view_method",
        "django_http_exceptions_total_by_type_total",
        "django_http_exceptions_total_by_view_total",
    }, http
