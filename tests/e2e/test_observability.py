"""The platform's metrics as a real Prometheus sees them: the four services and their background
processes scraped every second while a journey runs, with the repository's rules loaded.

What it shows: every rule loads and evaluates without error; every recording rule and every
dashboard query returns data; every metric a rule or a dashboard names is in the scrapes; and the
business counters move by exactly what the journey did.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import yaml

from tests.client import assert_problem, register_and_login, scrape
from tests.journey import LINES, TOTAL, journey_run
from tests.live import REPO, Databases, Stack, stack_start
from tests.platform import observability
from tests.prometheus import RULES, Prometheus, as_grafana_sends_it

pytestmark = pytest.mark.e2e

# What Grafana puts in for $__rate_interval at this scrape interval is seconds; a minute has data
# from the first scrapes on and stays well inside the test's run.
RATE_INTERVAL = "1m"


def counted(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name` over every series carrying at least these labels."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


@pytest.fixture(scope="module")
def observed(stack, tmp_path_factory) -> Iterator[dict]:
    """A journey and its retries and refusals, what every process counted before and after it, and
    Prometheus scraping throughout."""
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), stack).start()
    urls = {name: service.url for name, service in stack.services.items()}
    scrapes = {name: f"{service.url}/metrics" for name, service in stack.services.items()}
    scrapes |= {f"{name}-worker": relay.metrics_url for name, relay in stack.relays.items()}
    try:
        prometheus.wait_for(f"count(up == 1) == {len(scrapes)}", timeout=30)
        before = {name: scrape(url) for name, url in scrapes.items()}
        journey_run(urls)
        # The paid order placed again with its key: a replay. The key with another order: a 422.
        email, tokens = register_and_login(urls["auth"])
        headers = {"Authorization": f"Bearer {tokens['access_token']}", "Idempotency-Key": str(uuid.uuid4())}
        order = {"currency": "EUR", "lines": LINES, "payment_method": "pm_card_visa"}
        first = requests.post(f"{urls['orders']}/api/orders/", json=order, headers=headers, timeout=30)
        again = requests.post(f"{urls['orders']}/api/orders/", json=order, headers=headers, timeout=30)
        other = {**order, "lines": LINES[:1]}
        reused = requests.post(f"{urls['orders']}/api/orders/", json=other, headers=headers, timeout=30)
        assert (first.status_code, again.status_code, again.headers.get("Idempotent-Replayed")) == (201, 201, "true")
        assert_problem(reused, 422, "idempotency_key_reused")
        # Wrong passwords for one account until auth makes the next attempt wait: one refusal.
        guesses = []
        for _ in range(10):
            guess = requests.post(
                f"{urls['auth']}/api/auth/token/", json={"email": email, "password": "not-it-42!"}, timeout=30
            )
            guesses.append(guess.status_code)
            if guess.status_code == 429:
                break
        assert guesses[-1] == 429 and set(guesses[:-1]) == {401}, guesses
        deadline = time.monotonic() + 60
        while stack.events_undelivered() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stack.events_undelivered() == 0
        time.sleep(3)  # three scrapes and rule evaluations with everything delivered
        after = {name: scrape(url) for name, url in scrapes.items()}
        yield {
            "prometheus": prometheus,
            "before": before,
            "after": after,
            "guesses": guesses,
            "events": stack["notifications"].sql("SELECT count(*) FROM notifications_processedevent")[0][0],
        }
    finally:
        prometheus.stop()


def moved(observed, process: str, name: str, **labels: str) -> float:
    return counted(observed["after"][process], name, **labels) - counted(observed["before"][process], name, **labels)


def test_every_rule_loads_and_evaluates_without_error(observed):
    groups = observed["prometheus"].api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(observability.rule_expressions())
    assert [(rule["name"], rule["health"], rule.get("lastError", "")) for rule in rules if rule["health"] != "ok"] == []


def test_every_recording_rule_returns_data(observed):
    recorded = [
        rule["record"]
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    empty = [name for name in recorded if not observed["prometheus"].query(name)]
    assert empty == []


def test_every_dashboard_query_returns_data(observed):
    expressions = [
        as_grafana_sends_it(expression, rate_interval=RATE_INTERVAL)
        for expression in observability.dashboard_expressions()
    ]
    empty = [expression for expression in expressions if not observed["prometheus"].query(expression)]
    assert empty == []


def test_every_metric_the_rules_and_dashboards_name_is_scraped(observed):
    expressions = observability.rule_expressions() + observability.dashboard_expressions()
    named = set().union(*(observability.metric_names(expression) for expression in expressions))
    scraped = set(observed["prometheus"].api("label/__name__/values"))
    assert {"orders_placed_total", "outbox_oldest_pending_event_age_seconds", "up"} <= named  # the parse works
    assert named - scraped == set()


def _own(labels: dict, name: str) -> str:
    """A label as the process reported it: Prometheus renames it `exported_<name>` when the target
    carries a label of that name too."""
    return labels.get(f"exported_{name}", labels[name])


def test_every_process_reports_its_build_and_it_matches_its_target_labels(observed):
    builds = observed["prometheus"].query("platform_build_info")
    by_target = {(sample["metric"]["job"], sample["metric"]["instance"]): sample["metric"] for sample in builds}
    assert len(by_target) == 4 + 3  # four web servers, two relays, one email worker
    assert {
        (_own(labels, "service"), _own(labels, "version"), _own(labels, "color")) for labels in by_target.values()
    } == {(name, "e2e", "blue") for name in ("auth", "orders", "payments", "notifications")}
    for labels in by_target.values():  # what the scrape says of a target is what runs there
        assert [labels.get(name, _own(labels, name)) for name in ("service", "version", "color")] == [
            _own(labels, name) for name in ("service", "version", "color")
        ]


def test_orders_counts_each_order_once_by_its_outcome(observed):
    # The journey's paid and declined orders, and the order placed twice with one key: paid once.
    assert moved(observed, "orders", "orders_placed_total", outcome="paid") == 2
    assert moved(observed, "orders", "orders_placed_total", outcome="payment_failed") == 1
    assert moved(observed, "orders", "orders_placed_total", outcome="payment_refused") == 0


def test_payments_counts_charges_by_outcome_and_amount(observed):
    assert moved(observed, "payments", "payments_charges_total", outcome="succeeded") == 2
    assert moved(observed, "payments", "payments_charges_total", outcome="declined") == 1
    amount = "payments_charged_amount_minor_units_total"
    assert moved(observed, "payments", amount, outcome="succeeded", currency="EUR") == 2 * TOTAL
    assert moved(observed, "payments", amount, outcome="declined", currency="EUR") == TOTAL


def test_a_replay_and_a_reused_key_are_counted(observed):
    assert moved(observed, "orders", "idempotency_replays_total", view="order-list-create") == 1
    assert moved(observed, "orders", "http_problems_total", status="422", code="idempotency_key_reused") == 1


def test_auth_counts_logins_tokens_and_the_refusal(observed):
    failed = len(observed["guesses"]) - 1
    assert moved(observed, "auth", "auth_logins_total", outcome="succeeded") == 2
    assert moved(observed, "auth", "auth_logins_total", outcome="invalid_credentials") == failed
    assert moved(observed, "auth", "auth_tokens_issued_total", grant="password") == 2
    assert moved(observed, "auth", "rate_limit_refusals_total") == 1
    assert moved(observed, "auth", "http_problems_total", status="429", code="throttled") == 1


def test_the_relays_count_every_delivery_and_the_outboxes_end_empty(observed):
    delivered = moved(observed, "orders-worker", "outbox_deliveries_total", outcome="delivered") + moved(
        observed, "payments-worker", "outbox_deliveries_total", outcome="delivered"
    )
    received = moved(observed, "notifications", "notifications_events_received_total", result="new")
    assert delivered == received > 0
    for name in ("orders", "payments"):
        assert counted(observed["after"][name], "outbox_pending_events") == 0
        assert counted(observed["after"][name], "outbox_oldest_pending_event_age_seconds") == 0


def test_prometheus_sees_the_journey_in_the_business_rules(observed):
    prometheus = observed["prometheus"]
    paid = prometheus.query('service_outcome:orders_placed:rate5m{outcome="paid"}')
    assert [(sample["metric"]["service"], float(sample["value"][1]) > 0) for sample in paid] == [("orders", True)]
    backlog = prometheus.query("service:outbox_pending_events:max")
    assert sorted((sample["metric"]["service"], sample["value"][1]) for sample in backlog) == [
        ("orders", "0"),
        ("payments", "0"),
    ]
    # Nothing is down, failing or stuck, not even pending. (Logins hash passwords for a good part of
    # a second: on a loaded machine a few of them can make the latency SLO's short windows burn.)
    assert json.dumps(prometheus.query('ALERTS{alertname!="LatencyErrorBudgetBurn"}')) == "[]"


def test_the_renderer_draws_every_dashboard_from_these_scrapes(observed, tmp_path):
    """perf/dashboards.py's drawing, on this test's Prometheus: one PNG per dashboard, every panel
    with data (its full run, under k6 load, is `make dashboards`)."""
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "perf" / "dashboards.py")
    renderer = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dashboards", renderer)  # its dataclasses look their module up there
    spec.loader.exec_module(renderer)
    end = time.time()
    drawn = []
    for name, dashboard in observability.dashboards().items():
        path = tmp_path / f"{name}.png"
        drawn += renderer.draw(dashboard, observed["prometheus"], start=end - 60, end=end, path=path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f"{item.dashboard}: {item.panel}" for item in drawn if not item.has_data] == []
    panels = [
        panel for board in observability.dashboards().values() for panel in board["panels"] if panel["type"] != "row"
    ]
    assert len(drawn) == len(panels)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Iterator[Stack]:
    """The four services just started on databases of their own, before anything has asked them
    anything."""
    workdir = tmp_path_factory.mktemp("fresh")
    databases = Databases(workdir, os.environ.get("DATABASE_URL"))
    starting = stack_start(workdir, databases, ("auth", "orders", "payments", "notifications"))
    try:
        yield next(starting)
    finally:
        starting.close()
        databases.drop_all()


@pytest.mark.parametrize(
    ("service", "name", "labels"),
    [
        ("orders", "orders_placed_total", {"outcome": "paid"}),
        ("payments", "payments_charges_total", {"outcome": "declined"}),
        ("auth", "auth_logins_total", {"outcome": "invalid_credentials"}),
        ("notifications", "notifications_events_received_total", {"result": "duplicate"}),
        ("orders", "outbox_deliveries_total", {"outcome": "failed"}),
    ],
)
def test_a_fresh_service_exposes_its_counters_at_zero_before_its_first_request(fresh, service, name, labels):
    samples = scrape(f"{fresh[service].url}/metrics")
    assert samples.get((name, tuple(sorted(labels.items())))) == 0
