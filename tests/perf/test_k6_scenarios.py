"""The k6 scenarios of perf/k6, run for a few seconds at a low rate against the real services.

A smoke test, not a benchmark: it proves each scenario runs end to end with its thresholds, every
check passes, and k6's request counts match what the services themselves counted in /metrics.
Speed is measured by perf/bench.py, whose recorded results live in perf/results.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.client import requests_counted
from tests.live import REPO, LiveService, Stack

pytestmark = pytest.mark.e2e

K6 = Path(sys.executable).parent / "k6"
CONFIG = str(REPO / "platform" / "gunicorn.conf.py")
SCENARIOS = REPO / "perf" / "k6"


def counted(stack: Stack, service: str, method: str, view: str) -> int:
    return requests_counted(stack[service].url, view, method)


def k6_run(stack: Stack, script: str, summary: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run(
        [str(K6), "run", "--no-usage-report", "--quiet", str(SCENARIOS / script)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            "K6_NO_USAGE_REPORT": "true",
            **{f"{name.upper()}_URL": service.url for name, service in stack.services.items()},
            "SUMMARY_FILE": str(summary),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert summary.exists(), result.stdout + result.stderr
    return result, json.loads(summary.read_text())


def failed_thresholds(summary: dict) -> list[str]:
    return [
        f"{metric} {expression}"
        for metric, values in summary["metrics"].items()
        for expression, result in values.get("thresholds", {}).items()
        if not result["ok"]
    ]


def checks(summary: dict) -> dict[str, tuple[int, int]]:
    """Each check of the run, setup()'s group included: (passes, fails)."""
    found, groups = {}, [summary["root_group"]]
    while groups:
        group = groups.pop()
        found |= {check["name"]: (check["passes"], check["fails"]) for check in group["checks"]}
        groups += group["groups"]
    return found


def sent(summary: dict, name: str) -> int:
    return int(summary["metrics"][f"http_req_duration{{name:{name}}}"]["values"]["count"])


def test_journey_runs_with_every_check_passing(stack, tmp_path):
    placed_before = counted(stack, "orders", "POST", "order-list-create")
    charged_before = counted(stack, "payments", "POST", "payment-create")
    # Other tests of the session run k6 against the same orders database: count this run's orders only.
    known = {row[0] for row in stack["orders"].sql("SELECT id FROM orders_order")}

    result, summary = k6_run(
        stack, "journey.js", tmp_path / "summary.json", RATE="2", DURATION="3s", USERS="2", LATENCY_THRESHOLDS="off"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert failed_thresholds(summary) == []
    # A constant arrival rate of 2/s for 3 s starts a journey every 0.5 s from 0 s on; whether the one due
    # at the very end still starts depends on timing.
    journeys = summary["metrics"]["iterations"]["values"]["count"]
    assert journeys in {6, 7}
    assert "dropped_iterations" not in summary["metrics"]
    assert checks(summary) == {
        "register: 201": (2, 0),
        "login: 200 with an access token": (2, 0),
        "order_create: 201": (journeys, 0),
        "order_create: paid, or payment_failed on the declined card": (journeys, 0),
        "order_create: total, currency and lines as sent": (journeys, 0),
        "order_list: 200": (journeys, 0),
        "order_list: a page with the caller's orders": (journeys, 0),
        "order_detail: 200": (journeys, 0),
        "order_detail: the order asked for, with its history": (journeys, 0),
        "inbox: 200": (journeys, 0),
        "inbox: a page of order and payment notifications": (journeys, 0),
    }
    assert [sent(summary, name) for name in ("order_create", "order_list", "order_detail", "inbox")] == [journeys] * 4
    assert counted(stack, "orders", "POST", "order-list-create") - placed_before == journeys
    assert counted(stack, "payments", "POST", "payment-create") - charged_before == journeys
    # Every fifth journey (the 5th, iteration 4) pays with the card the provider declines.
    placed = stack["orders"].sql("SELECT id, status FROM orders_order WHERE idempotency_key LIKE %s", ("k6-%",))
    statuses = [status for order_id, status in placed if order_id not in known]
    assert {status: statuses.count(status) for status in set(statuses)} == {"paid": journeys - 1, "payment_failed": 1}


def test_token_verification_scenario_runs_with_every_check_passing(stack, tmp_path):
    listed_before = counted(stack, "orders", "GET", "order-list-create")

    result, summary = k6_run(
        stack, "auth.js", tmp_path / "summary.json", VUS="2", DURATION="3s", LATENCY_THRESHOLDS="off"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert failed_thresholds(summary) == []
    reads = sent(summary, "token_verified_read")
    assert reads > 0
    assert checks(summary) == {
        "register: 201": (1, 0),
        "login: 200 with an access token": (1, 0),
        "token_verified_read: 200": (reads, 0),
        "token_verified_read: the caller's empty order list": (reads, 0),
    }
    assert counted(stack, "orders", "GET", "order-list-create") - listed_before == reads


def test_journey_fails_when_a_threshold_is_crossed(stack, tmp_path):
    """The thresholds bite: against an orders URL nothing listens on, every journey fails and k6 says so."""
    result, summary = k6_run(
        stack,
        "journey.js",
        tmp_path / "summary.json",
        RATE="1",
        DURATION="1s",
        USERS="1",
        ORDERS_URL="http://127.0.0.1:9",
    )

    assert result.returncode == 99, result.stdout + result.stderr
    assert sorted(failed_thresholds(summary)) == [
        "checks rate>0.99",
        "http_req_failed rate<0.01",
    ]


def test_the_cluster_scenario_runs_and_renews_its_tokens(stack, tmp_path):
    """perf/k6/cluster.js (run against the cluster by tests/cluster) here against the local services,
    renewing every virtual user's token after one second instead of 200: none of its requests fails."""
    result, summary = k6_run(
        stack,
        "cluster.js",
        tmp_path / "summary.json",
        RATE="2",
        DURATION="4s",
        USERS="2",
        ORDER_EVERY="2",
        TOKEN_RENEW_AFTER_SECONDS="1",
        TOKEN_RENEW_SPREAD_SECONDS="1",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["metrics"]["http_req_failed"]["values"]["passes"] == 0
    assert {name: fails for name, (_, fails) in checks(summary).items()} == {
        "order_detail: 200": 0,
        "me: 200": 0,
        "inbox: 200": 0,
        "payment_detail: 200": 0,
        "order_create: 201 paid": 0,
        "login: 200": 0,
        "register: 201": 0,  # setup()
        "login: 200 with an access token": 0,  # setup()
    }
    assert checks(summary)["login: 200"][0] >= 1, "no token was renewed"


@pytest.mark.parametrize(
    ("mode", "counted_view", "check"),
    [
        ("logins", ("auth", "POST", "auth-token"), "login: 200"),
        ("orders", ("orders", "POST", "order-list-create"), "order_create: 201"),
    ],
)
def test_the_cluster_scenarios_autoscaling_modes_send_only_their_request(stack, tmp_path, mode, counted_view, check):
    """MODE=logins and MODE=orders (the autoscaling drills' loads): each iteration is one login or one
    order placement, and the services counted exactly what k6 sent."""
    before = counted(stack, *counted_view)
    result, summary = k6_run(
        stack, "cluster.js", tmp_path / "summary.json", MODE=mode, RATE="3", DURATION="3s", USERS="3"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["metrics"]["http_req_failed"]["values"]["passes"] == 0
    found = checks(summary)
    assert set(found) == {check, "register: 201", "login: 200 with an access token"}  # the last two: setup()
    passes, fails = found[check]
    assert (fails, passes) == (0, summary["metrics"]["iterations"]["values"]["count"])
    setup_logins = 3 if mode == "logins" else 0  # setup()'s own logins go to the same view
    assert counted(stack, *counted_view) - before == passes + setup_logins


def test_the_cluster_scenarios_rate_can_be_a_fraction_of_a_second(stack, tmp_path):
    """RATE per TIME_UNIT_SECONDS: the autoscaling drill asks for a login rate worked out from what a
    login costs on the machine (tests/cluster/test_scaling.py), such as 2.2 a second."""
    result, summary = k6_run(
        stack,
        "cluster.js",
        tmp_path / "summary.json",
        MODE="logins",
        RATE="5",
        TIME_UNIT_SECONDS="2",
        DURATION="4s",
        USERS="3",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["metrics"]["iterations"]["values"]["count"] in (10, 11)  # 2.5 a second for 4 s


@pytest.fixture(scope="module")
def ratios():
    """perf/ratios.py, the side-by-side benchmark (it imports bench.py beside it, as when run as a script)."""
    sys.path.insert(0, str(REPO / "perf"))
    import ratios

    return ratios


@pytest.fixture
def bare(ratios, tmp_path):
    """The bare Django view of the benchmark under platform/gunicorn.conf.py, stopped after the test."""
    server = ratios.BareServer(workdir=tmp_path, workers="1", threads="2").start()
    yield server
    assert server.stop() == 0, server.log_text()


def test_the_bare_view_phase_runs_under_the_platforms_gunicorn_config(stack, tmp_path, bare):
    result, summary = k6_run(
        stack, "ratios.js", tmp_path / "summary.json", TARGET="bare", VUS="2", DURATION="2s", BARE_URL=bare.url
    )

    assert result.returncode == 0, result.stdout + result.stderr
    requests = sent(summary, "bare")
    assert requests > 0
    assert checks(summary) == {"bare: 200": (requests, 0)}
    assert "Using worker: apps.core.gunicorn_worker.ThreadWorker" in bare.log_text()


def test_the_benchmarks_servers_keep_their_workers_for_the_whole_run(bare, floor):
    """max_requests off in the bare view and the floor (the services get the same environment), as the
    platform's gunicorn configuration reads it from the environment each server was given (read in a
    process of its own: the configuration sets variables of the environment it runs in)."""
    for server in (bare, floor):
        entries = Path(f"/proc/{server.process.pid}/environ").read_bytes().decode().split("\0")
        environ = dict(entry.split("=", 1) for entry in entries if "=" in entry)
        read = subprocess.run(
            [sys.executable, "-c", "import runpy, sys; print(runpy.run_path(sys.argv[1])['max_requests'])", CONFIG],
            env=environ,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert read.stdout.strip() == "0", read.stderr


@pytest.fixture
def floor(ratios, stack, tmp_path):
    """perf/floor served as the benchmark serves it, with orders' environment; stopped after the test."""
    server = ratios.floor_server(stack, tmp_path)
    yield server
    assert server.stop() == 0, server.log_text()


def test_the_floor_phase_goes_through_the_services_own_handling_and_reads_nothing(stack, tmp_path, floor):
    orders_read_before = counted(stack, "orders", "GET", "order-detail")

    result, summary = k6_run(
        stack, "ratios.js", tmp_path / "summary.json", TARGET="floor", VUS="2", DURATION="2s", FLOOR_URL=floor.url
    )
    anonymous = requests.get(f"{floor.url}/floor/", timeout=5)
    assert floor.stop() == 0, floor.log_text()  # its log lines written out

    assert result.returncode == 0, result.stdout + result.stderr
    reads = sent(summary, "floor")
    assert reads > 0
    assert checks(summary) == {
        "register: 201": (1, 0),
        "login: 200 with an access token": (1, 0),
        "floor: 200": (reads, 0),
    }
    # Every read went through the service's middleware: one access log line each, with a request id.
    entries = [json.loads(line) for line in floor.log_text().splitlines() if line.startswith("{")]
    answered = [entry for entry in entries if entry.get("logger") == "apps.access" and entry.get("path") == "/floor/"]
    assert [entry["status"] for entry in answered].count(200) == reads
    assert all(entry["request_id"] for entry in answered)
    # The token is checked as the order read's is: none, and the answer is the platform's 401.
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"] == "application/problem+json"
    assert anonymous.json()["request_id"] == anonymous.headers["X-Request-ID"]
    # Served with orders' settings, but not by orders, and reading no order.
    assert counted(stack, "orders", "GET", "order-detail") == orders_read_before


def test_with_export_traces_each_request_of_the_floor_sends_its_span_to_the_trace_sink(ratios, stack, tmp_path):
    sink = ratios.TraceSink()
    env = {
        **stack["orders"].env,
        "DJANGO_SETTINGS_MODULE": ratios.FLOOR_SETTINGS,
        **sink.environment(),
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # exported within a tenth of a second, not the SDK's five
    }
    server = LiveService(name="orders", env=env, workdir=tmp_path).start()
    try:
        # Without a token: the platform's 401, and a span all the same (every API request has one).
        answers = [requests.get(f"{server.url}/floor/", timeout=5).status_code for _ in range(7)]
        deadline = time.monotonic() + 20
        while sink.spans < len(answers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answers == [401] * 7
        assert sink.spans == len(answers) and sink.exports >= 1  # /readyz, a probe, has no span
        # Anything but a trace export is refused, and counts nothing.
        assert requests.post(f"{sink.url}/v1/traces", data=b"\xff\xff", timeout=5).status_code == 400
        assert sink.spans == len(answers)
    finally:
        assert server.stop() == 0, server.log_text()
        sink.stop()


def test_with_production_sampling_only_the_traces_a_caller_sampled_reach_the_trace_sink(ratios, stack, tmp_path):
    """At a ratio of 0 (production's sampler, its outcome certain) the floor exports nothing for
    requests that come without a trace, and every span of the requests whose `traceparent` is sampled."""
    sink = ratios.TraceSink()
    env = {
        **stack["orders"].env,
        "DJANGO_SETTINGS_MODULE": ratios.FLOOR_SETTINGS,
        **sink.environment(ratios.trace_sampling(0.0)),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    server = LiveService(name="orders", env=env, workdir=tmp_path).start()
    try:
        unsampled = [requests.get(f"{server.url}/floor/", timeout=5).status_code for _ in range(5)]
        traced = [
            requests.get(
                f"{server.url}/floor/", headers={"traceparent": f"00-{uuid.uuid4().hex}-00f067aa0ba902b7-01"}, timeout=5
            ).status_code
            for _ in range(3)
        ]
        deadline = time.monotonic() + 20
        while sink.spans < len(traced) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # five batch intervals: a span of the unsampled requests would be in by now
        assert unsampled + traced == [401] * 8
        assert sink.spans == len(traced)
    finally:
        assert server.stop() == 0, server.log_text()
        sink.stop()


def test_export_traces_samples_as_the_production_overlay_says(ratios):
    # What deploy/tests/test_manifests.py finds in production's rendered platform-config.
    sampling = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}

    assert ratios.production_sampling() == sampling
    assert ratios.trace_sampling(None) == sampling
    assert ratios.trace_sampling(1.0) == {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1",
    }


def test_the_report_says_whether_the_run_exported_its_spans_and_how_they_were_sampled(ratios):
    def result(database, spans, **recorded):
        return {"database": database, "phases": [], "spans_exported": spans, **recorded}

    assert ratios.traces_described([result("sqlite", None), result("postgres", None)]).startswith("no exporter")
    production = ratios.production_sampling()
    exported = ratios.traces_described(
        [result("sqlite", 123456, trace_sampling=production), result("postgres", 0, trace_sampling=production)]
    )
    settings = ", ".join(f"`{key}={value}`" for key, value in production.items())
    assert exported.startswith(f"spans exported over OTLP/HTTP (`--export-traces`), sampled with {settings}: ")
    assert "production's sampling;" in exported
    assert exported.endswith("spans received: SQLite 123,456, PostgreSQL 0.")
    every = ratios.traces_described([result("sqlite", 9, trace_sampling=ratios.trace_sampling(1.0))])
    assert "`OTEL_TRACES_SAMPLER_ARG=1`: not production's (`--trace-ratio`)" in every
    # Recorded before runs sampled as production does: every span was exported.
    assert ratios.traces_described([result("sqlite", 5)]).startswith("every span exported over OTLP/HTTP")
    # Recorded before the option existed: no exporter then.
    assert ratios.traces_described([{"database": "sqlite", "phases": []}]).startswith("no exporter")


def test_the_sampler_reads_a_serving_gunicorns_cpu_and_each_workers_memory(ratios, bare):
    import bench  # beside ratios.py, on the path the fixture set

    group = bench.ProcessGroup("bare", bare.process.pid, forks_workers=True)
    served = 0
    with bench.Sampler([group]) as sampler:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # two samples or more beside the first one
            assert requests.get(f"{bare.url}/bare/", timeout=5).status_code == 200
            served += 1
    seconds, cores = sampler.cores(started, time.monotonic())

    assert served > 10 and seconds >= 1.0
    assert cores["bare"] > 0.0
    assert cores["whole machine"] >= cores["bare"]
    assert cores["rest of the machine"] >= 0.0
    assert "postgres" not in cores  # not asked for
    assert sampler.workers_seen["bare"] == set(bench.children(bare.process.pid))
    assert len(sampler.workers_seen["bare"]) == 1
    assert 10 * 1024 * 1024 < sampler.peak_worker["bare"] < sampler.peak["bare"]  # the master is the rest


def test_the_token_verified_read_phase_reads_the_order_placed_in_setup(stack, tmp_path):
    read_before = counted(stack, "orders", "GET", "order-detail")

    result, summary = k6_run(stack, "ratios.js", tmp_path / "summary.json", TARGET="order_read", VUS="2", DURATION="2s")

    assert result.returncode == 0, result.stdout + result.stderr
    reads = sent(summary, "order_read")
    found = checks(summary)
    assert found.pop("order_read: 200 with the order asked for") == (reads, 0)
    passes, fails = found.pop("order_read: the order asked for, paid, with its lines and history")
    assert (fails, passes >= 2) == (0, True)  # the first iteration of each virtual user is checked in full
    assert found == {"register: 201": (1, 0), "login: 200 with an access token": (1, 0), "setup order: 201": (1, 0)}
    assert counted(stack, "orders", "GET", "order-detail") - read_before == reads


def test_the_placement_phase_places_paid_orders_with_unique_keys(stack, tmp_path):
    placed_before = counted(stack, "orders", "POST", "order-list-create")
    charged_before = counted(stack, "payments", "POST", "payment-create")
    query = "SELECT count(*) FROM orders_order WHERE idempotency_key LIKE %s AND status = 'paid'"
    orders_before = stack["orders"].sql(query, ("ratios-%",))[0][0]

    result, summary = k6_run(
        stack, "ratios.js", tmp_path / "summary.json", TARGET="order_create", VUS="2", DURATION="2s", USERS="2"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    placed = sent(summary, "order_create")
    assert checks(summary) == {
        "register: 201": (2, 0),
        "login: 200 with an access token": (2, 0),
        "order_create: 201": (placed, 0),
        "order_create: paid, with the total and lines sent": (placed, 0),
    }
    assert counted(stack, "orders", "POST", "order-list-create") - placed_before == placed
    assert counted(stack, "payments", "POST", "payment-create") - charged_before == placed
    # One new paid order per request: no key was used twice (a replay would place nothing).
    assert stack["orders"].sql(query, ("ratios-%",))[0][0] - orders_before == placed


def test_each_phase_of_the_benchmark_waits_until_earlier_placements_are_delivered(ratios, stack, tmp_path):
    """A round's placements leave the relays, notifications and the email worker tens of seconds of
    work: the next phase starts once each service's /metrics says nothing is left to deliver."""
    result, summary = k6_run(
        stack, "ratios.js", tmp_path / "summary.json", TARGET="order_create", VUS="2", DURATION="2s", USERS="2"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sent(summary, "order_create") > 0

    waited, pending = ratios.settle(stack, timeout=60)

    assert pending == {}, f"still pending after {waited:.1f} s"
    # The gauges it waited on are the services' own, all of them present (a series that went missing
    # would read as nothing pending), and what they say is what the databases hold.
    assert ratios.backlog(stack) == {
        "orders orders.orderevent": 0.0,
        "payments payments.paymentevent": 0.0,
        "notifications emails": 0.0,
    }
    assert stack.events_undelivered() == 0
    query = "SELECT count(*) FROM notifications_emaildelivery WHERE status = 'pending'"
    assert stack["notifications"].sql(query)[0][0] == 0


def test_after_a_placement_phase_the_run_measures_delivering_what_it_left(ratios, stack, tmp_path, bare, floor):
    """With orders' relay stopped, the placements leave their events in orders' outbox; once it runs
    again, `delivery_run` records what was left, how long delivering it took, and the CPU it used."""
    relay = stack.relays["orders"]
    relay.stop()
    try:
        result, summary = k6_run(
            stack, "ratios.js", tmp_path / "summary.json", TARGET="order_create", VUS="2", DURATION="2s", USERS="2"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert sent(summary, "order_create") > 0
        left = stack["orders"].sql("SELECT count(*) FROM orders_orderevent WHERE delivered_at IS NULL")[0][0]
        assert left > 0
    finally:
        # Not waiting for it to start: `delivery_run` reads the backlog while the relay is still loading
        # Django, before it can have delivered any of it, and then waits for it.
        relay.start(wait=False)
    phase = ratios.Phase("order-create", "order_create", vus=2, orders_workers=1)

    ratios.delivery_run(phase, stack=stack, processes=ratios.measured_processes(stack, bare, floor), marker=None)

    # What was left is what orders' outbox held.
    assert phase.pending_at_end["orders orders.orderevent"] == left
    assert phase.undelivered == {}
    assert phase.delivered_seconds is not None and phase.delivered_seconds > 0
    assert set(ratios.backlog(stack).values()) == {0.0}
    assert stack.events_undelivered() == 0
    # CPU of every measured process over the delivery, and of the whole machine.
    assert {"orders relay", "notifications", "notifications email worker", "whole machine"} <= set(
        phase.delivery_cpu_seconds
    )
    assert phase.delivery_cpu_seconds["whole machine"] > 0


def test_the_report_gives_the_placement_with_its_delivery_counted(ratios):
    def placed(round, seconds_after, *, left=400.0):  # noqa: A002 (the phase's field)
        return ratios_phase("order-create", 50.0, round=round) | {
            "count": 1000,
            "seconds": 20,
            "cpu_ms_per_request": {"whole machine": 20.0},
            "pending_at_end": {"orders orders.orderevent": left, "notifications emails": 100.0},
            "delivered_seconds": seconds_after,
            "undelivered": {} if seconds_after is not None else {"notifications emails": 3.0},
            "delivery_cpu_seconds": {"whole machine": 10.0},
        }

    phases = [
        ratios_phase("bare-create", 1000.0, round=1),
        placed(1, 5.0),  # 1000 placements in 25 s: 40 a second, 0.040 of the bare view
        ratios_phase("bare-create", 1000.0, round=2),
        placed(2, 20.0, left=900.0),  # 25 a second, 0.025
    ]
    result = {"database": "sqlite", "phases": phases, "log_warnings": {}, "machine_cores": 2}

    found = ratios.placements_delivered(result)

    assert [(delivered.rate, delivered.ratio) for delivered in found] == [(40.0, 0.04), (25.0, 0.025)]
    # 10 CPU seconds after the phase over 1000 placements: 10 ms more each.
    assert [(delivered.cpu_ms_during, delivered.cpu_ms_with_delivery) for delivered in found] == [(20.0, 30.0)] * 2
    assert ratios.delivered_cells(found) == [
        "750 (median of 2 rounds: 500, 1000)",
        "12.5 (median of 2 rounds: 5.0, 20.0)",
        "32.5 (median of 2 rounds: 40.0, 25.0)",
        "0.033 (median of 2 rounds: 0.040, 0.025)",
        "20.00 during the phase, 30.00 with the delivery after it",
    ]
    # A round whose placements were not all delivered in time gives no rate, and says so.
    late = {**result, "phases": [*phases[:3], placed(2, None)]}
    assert (
        ratios.delivered_cells(ratios.placements_delivered(late))[1:]
        == ["not all delivered within 300 s in round 2"] * 4
    )
    # A result recorded before the delivery was measured has no such section.
    before = {**result, "phases": [ratios_phase(phase["name"], phase["rate"]) for phase in phases]}
    assert ratios.placements_delivered(before) is None
    arguments = argparse.Namespace(
        date="2026-12-08", rounds=2, no_scaling=True, phase_seconds=20, read_vus=32, create_vus=16, users=5,
        workers=2, threads=4,
    )  # fmt: skip
    reads = [ratios_phase(name, 500.0, round=number) for number in (1, 2) for name in ("bare-read", "order-read")]
    whole = {**result, "phases": [*reads, *phases]}
    text = ratios.report([whole], machine={"cores": "2"}, command="bench", load_before="0.1", args=arguments)
    assert "## The placement, delivered" in text
    assert (
        "| that over the bare view (P2's ratio, the delivery counted) | 0.033 (median of 2 rounds: 0.040, 0.025) |"
    ) in text


def test_the_report_says_how_long_phases_waited_for_the_backlog_and_which_started_with_some(ratios):
    settled = [
        ratios_phase("floor-read", 900.0) | {"settle_seconds": 0.1, "unsettled": {}},
        ratios_phase("bare-read", 1000.0, round=2) | {"settle_seconds": 41.5, "unsettled": {}},
    ]
    assert ratios.settled_described(settled) == (
        "Backlog before each phase (outbox events and emails still to deliver, from each service's /metrics): "
        "waited for at most 41.5 s (before round 2 bare-read); every phase started with none."
    )
    late = [
        *settled,
        ratios_phase("order-read", 500.0) | {"settle_seconds": 300.2, "unsettled": {"notifications emails": 7.0}},
    ]
    assert ratios.settled_described(late).endswith(
        "waited for at most 300.2 s (before round 1 order-read); phases started with some left after 300 s: "
        "round 1 order-read with 7 notifications emails."
    )


def ratios_phase(name, rate, *, round=1, errors=0, p99=100.0, cores=1.0, rss=80.0):  # noqa: A002 (the phase's field)
    return {
        "name": name,
        "target": {"bare": "bare", "floor": "floor"}.get(name.split("-")[0], "order_read"),
        "vus": 32,
        "orders_workers": 2,
        "round": round,
        "rate": rate,
        "median_ms": 10.0,
        "p95_ms": 20.0,
        "p99_ms": p99,
        "max_ms": 50.0,
        "errors": errors,
        "checks_failed": 0,
        "cores": {"whole machine": cores, "rest of the machine": 0.0},
        "cpu_ms_per_request": {"orders": cores * 1000 / rate},
        "peak_worker_rss_mib": dict.fromkeys(("auth", "orders", "payments", "notifications"), rss),
    }


def test_the_goals_are_judged_on_ratios_to_the_bare_view(ratios):
    result = {
        "phases": [
            ratios_phase("bare-read", 1000.0),
            ratios_phase("order-read", 500.0),
            ratios_phase("bare-create", 1000.0),
            ratios_phase("order-create", 99.0),
            ratios_phase("order-read-1-worker", 300.0, rss=121.0),
        ]
    }

    found = {verdict.goal: verdict.held for verdict in ratios.verdicts(result)}

    assert found == {
        "P1 token-verified read": True,  # 0.50
        "P2 order placement": False,  # 0.099
        "P4 worker memory": False,  # 121 MiB in the 1-worker phase
        "P4 1 to 2 workers": False,  # 1.67x
    }


def test_the_scaling_verdict_says_how_much_the_machine_left_for_a_second_worker(ratios):
    # One worker already kept 1.5 of 2 cores busy (its own, k6's, the database's): at that CPU per
    # request a second worker has half a core to add, 1.33x at most.
    phases = [
        ratios_phase("bare-read", 1000.0),
        ratios_phase("order-read", 900.0, cores=2.0),
        ratios_phase("bare-create", 1000.0),
        ratios_phase("order-create", 99.0),
        *(
            ratios_phase("order-read-1-worker", 600.0, round=number, cores=cores)
            for number, cores in ((1, 1.4), (2, 1.5), (3, 1.9))
        ),
    ]

    with_cores = {verdict.goal: verdict for verdict in ratios.verdicts({"phases": phases, "machine_cores": 2})}
    recorded_before = {verdict.goal: verdict for verdict in ratios.verdicts({"phases": phases})}

    scaling = with_cores["P4 1 to 2 workers"]
    assert not scaling.held  # 1.50x
    assert scaling.value == (
        "1.50x (600 -> 900 req/s, medians of the rounds; the 1-worker read used 1.50 of the machine's 2 cores: "
        "at its CPU per request, 2 workers could serve at most 1.33x here)"
    )
    assert recorded_before["P4 1 to 2 workers"].value == "1.50x (600 -> 900 req/s, medians of the rounds)"


def test_each_ratio_is_taken_within_a_round_and_judged_on_the_median(ratios):
    # The bare view drifts from 2000 to 1000 req/s over the run; the read keeps half of it in two
    # rounds of three. Rates pooled over the run would give 600 / 1400 = 0.43.
    result = {
        "phases": [
            ratios_phase("bare-read", 2000.0, round=1),
            ratios_phase("order-read", 1000.0, round=1),  # 0.50
            ratios_phase("bare-read", 1200.0, round=2),
            ratios_phase("order-read", 400.0, round=2),  # 0.33
            ratios_phase("bare-read", 1000.0, round=3),
            ratios_phase("order-read", 600.0, round=3),  # 0.60
            *(ratios_phase("bare-create", 1000.0, round=number) for number in (1, 2, 3)),
            ratios_phase("order-create", 100.0, round=1, p99=900.0),
            ratios_phase("order-create", 120.0, round=2, p99=1200.0),  # one slow round is enough to miss
            ratios_phase("order-create", 110.0, round=3, p99=800.0),
        ]
    }

    assert ratios.round_ratios(result, "order-read", "bare-read") == [0.5, 400 / 1200, 0.6]
    found = {verdict.goal: verdict for verdict in ratios.verdicts(result)}
    assert found["P1 token-verified read"].held  # median 0.50
    assert found["P1 token-verified read"].value.startswith("0.500 (median of 3 rounds: 0.500, 0.333, 0.600)")
    assert not found["P2 order placement"].held  # median 0.11, but p99 1.2 s in round 2
    assert "p99 1200 ms" in found["P2 order placement"].value

    result["phases"][3]["errors"] = 1  # an error in any round misses the goal whatever the median
    assert not {verdict.goal: verdict.held for verdict in ratios.verdicts(result)}["P1 token-verified read"]


def test_the_report_shows_every_round_and_the_mean_cost_of_each_phase(ratios):
    result = {
        "database": "sqlite",
        "phases": [
            ratios_phase("bare-read", 2000.0, round=1, cores=1.6),
            ratios_phase("order-read", 500.0, round=1, cores=1.9),
            ratios_phase("bare-read", 1000.0, round=2, cores=1.6),
            ratios_phase("order-read", 500.0, round=2, cores=1.7),
        ],
        "log_warnings": {"orders": {}},
    }

    text = "\n".join(ratios.database_section(result))

    assert "| 2 | order-read | order_read | 32 | 2 | 500.0 |" in text
    # orders' CPU per read: 3.8 and 3.4 ms in the two rounds, 3.60 their mean.
    assert "| orders | 1.20 | 3.60 |" in text
    assert "order-read 1.80 in all" in text


def test_the_read_is_taken_apart_into_the_platforms_handling_and_the_orders_own_work(ratios):
    phases = [
        ratios_phase("bare-read", 2000.0, round=1),
        ratios_phase("order-read", 600.0, round=1),
        ratios_phase("floor-read", 1200.0, round=1),  # 0.60 of the bare view; the read 0.50 of it
        ratios_phase("bare-read", 1000.0, round=2),
        ratios_phase("order-read", 400.0, round=2),
        ratios_phase("floor-read", 500.0, round=2),  # 0.50; the read 0.80 of it
        *(ratios_phase("bare-create", 1000.0, round=number) for number in (1, 2)),
        *(ratios_phase("order-create", 50.0, round=number) for number in (1, 2)),
    ]
    result = {"database": "sqlite", "phases": phases, "log_warnings": {}, "machine_cores": 2}
    handling, own_work = ratios.read_taken_apart(result)
    assert (handling, own_work) == ([0.6, 0.5], [0.5, 0.8])
    # P1 is their product, round by round.
    p1 = ratios.round_ratios(result, "order-read", "bare-read")
    assert p1 == pytest.approx([h * o for h, o in zip(handling, own_work, strict=True)])

    arguments = argparse.Namespace(
        date="2026-12-07", rounds=2, no_scaling=True, phase_seconds=20, read_vus=32, create_vus=16, users=5,
        workers=2, threads=4,
    )  # fmt: skip
    text = ratios.report([result], machine={"cores": "2"}, command="bench", load_before="0.1", args=arguments)
    assert (
        "| the platform's request handling: the floor (an empty token-verified read, perf/floor) over the bare view "
        "| 0.550 (median of 2 rounds: 0.600, 0.500) |"
    ) in text
    assert "| the order's own work: the order read over the floor | 0.650 (median of 2 rounds: 0.500, 0.800) |" in text
    # What the configuration says of the run: no 1-worker phase was run, no span exported.
    assert "- P4 scaling: not measured (`--no-scaling`)." in text
    assert "- Traces: no exporter (`--export-traces` not given)" in text

    # A result recorded before the floor existed has nothing to take apart, and says nothing of it.
    before = {**result, "phases": [phase for phase in phases if phase["name"] != "floor-read"]}
    assert ratios.read_taken_apart(before) is None
    assert "taken apart" not in ratios.report(
        [before], machine={"cores": "2"}, command="bench", load_before="0.1", args=arguments
    )


def test_workers_replaced_during_a_phase_are_counted_and_reported(ratios):
    seen = {"bare": {11, 12, 13, 14}, "orders": {21, 22}, "payments": {31, 32}}
    assert ratios.workers_replaced(seen, workers=2, orders_workers=2) == {
        "bare": 2,
        "floor": 0,
        "auth": 0,
        "orders": 0,
        "payments": 0,
        "notifications": 0,
    }
    one_worker = ratios.workers_replaced({"orders": {21, 22}}, workers=2, orders_workers=1)
    assert one_worker["orders"] == 1  # orders restarted with one worker, which gunicorn replaced once

    replaced = ratios_phase("bare-read", 2000.0, round=2)
    replaced["workers_replaced"] = {"bare": 2, "orders": 0}
    result = {
        "database": "sqlite",
        "phases": [ratios_phase("bare-read", 1000.0), ratios_phase("order-read", 500.0), replaced],
        "log_warnings": {},
    }
    text = "\n".join(ratios.database_section(result))
    assert "during a phase: round 2 bare-read: bare 2." in text
    result["phases"][2]["workers_replaced"] = {"bare": 0}
    assert "during a phase: none." in "\n".join(ratios.database_section(result))


@pytest.mark.parametrize(
    ("option", "value", "refused"),
    [
        ("--workers", "0", True),
        ("--threads", "-2", True),
        ("--threads", "two", True),
        ("--rounds", "0", True),
        ("--rounds", "10", True),
        ("--trace-ratio", "1.5", True),
        ("--trace-ratio", "a tenth", True),
        ("--workers", "3", False),
    ],
)
def test_the_benchmarks_sizing_and_rounds_are_checked_before_anything_starts(ratios, capsys, option, value, refused):
    import bench  # beside ratios.py, on the path the fixture set

    if refused:
        with pytest.raises(SystemExit) as exited:
            bench.parse(["--scenario", "ratios", option, value])
        assert exited.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err
    else:
        assert bench.parse(["--scenario", "ratios", option, value]).workers == 3


def test_a_trace_ratio_without_export_traces_is_refused(ratios, capsys):
    import bench

    with pytest.raises(SystemExit) as exited:
        bench.parse(["--scenario", "ratios", "--trace-ratio", "0.5"])
    assert exited.value.code == 2
    assert "--trace-ratio samples the spans --export-traces exports" in capsys.readouterr().err
    assert bench.parse(["--scenario", "ratios", "--export-traces", "--trace-ratio", "0.5"]).trace_ratio == 0.5
