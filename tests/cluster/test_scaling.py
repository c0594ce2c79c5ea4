"""Autoscaling from measurements, on the cluster: the HPA adds auth pods when logins make it CPU-bound,
and holds orders where it is while orders waits on a slow payments, where more orders pods would not
help. Each service's HPA scales past 500m of CPU per pod (deploy/README.md, "Autoscaling", has the
derivation). The numbers go to perf/results/.

Runs after the releases (the file name's place in the suite): the pods the HPA adds leave on their own
once the stabilization window has passed, and must not crowd the releases' node meanwhile.
"""

from __future__ import annotations

import datetime
import json
import time

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from kubernetes.utils import parse_quantity

from tests.cluster.kube import KIND_CLUSTER, NAMESPACE, REPO, other_color, wait_until
from tests.cluster.load import Load, LoadResult, machine, percentile

RESULTS = REPO / "perf" / "results"
# The logins' load, in cores over auth's pods: 600m per pod of two, past the 500m at which the HPA
# adds a pod (550m with its 10% tolerance), and inside what the node's two cores, shared with the
# control plane and the other pods, give auth. A login's cost is a PBKDF2 hash, measured on the
# machine that runs the test (`login_seconds`): 0.27 s of CPU on one machine, 0.54 s on a slower
# one, where a fixed 5 logins a second asked for 2.7 cores: auth got at most 1.75 (438m on each of
# four pods), served 2.64 logins a second, and 34 of 372 logins timed out at 30 s.
LOGIN_CORES = 1.2
# Placements a second: with payments 0.8 s slower, about 8 of orders' 12 bulkhead slots (two pods,
# two workers each, three calls to payments in flight per worker) are held waiting.
ORDER_RATE = 10
# How long the HPA is given: its 15 s sync, metrics-server's 15 s resolution and a rate window.
SCALE_OUT_WITHIN = 240
HOLD_SECONDS = 120
RECORD: dict = {}


def autoscaler_reading(cluster, service: str) -> dict:
    """What the service's HPA sees and decides now: replicas, and the CPU per pod in millicores."""
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE)
    cpu = None
    for metric in hpa.status.current_metrics or []:
        if metric.type == "Resource" and metric.resource.name == "cpu" and metric.resource.current.average_value:
            cpu = round(float(parse_quantity(metric.resource.current.average_value)) * 1000)
    return {
        "at": time.time(),
        "current": hpa.status.current_replicas,
        "desired": hpa.status.desired_replicas,
        "cpu_m_per_pod": cpu,
    }


def threshold_m(cluster, service: str) -> float:
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE)
    (metric,) = hpa.spec.metrics
    return float(parse_quantity(metric.resource.target.average_value)) * 1000


def watched(cluster, service: str, load: Load, seconds: float, *, until=None) -> list[dict]:
    """The HPA's readings every 5 s for `seconds` (or until `until(readings)`), the load running."""
    readings, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert load.process.poll() is None, f"k6 exited {load.process.returncode}"
        readings.append(autoscaler_reading(cluster, service))
        if until and until(readings):
            break
        time.sleep(5)
    return readings


def outcome(result: LoadResult, name: str) -> dict:
    """The requests of one name in a load's result: how many, how fast, what failed and how."""
    requests = [request for request in result.requests if request.name == name]
    durations = [request.duration_ms for request in requests]
    seconds = (requests[-1].at - requests[0].at) if len(requests) > 1 else 0
    return {
        "requests": len(requests),
        "per_second": round(len(requests) / seconds, 2) if seconds else None,
        "failed": sum(request.failed for request in requests),
        "failures_by_code": {
            code: sum(
                1 for request in requests if request.failed and f"{request.status} {request.problem_code}" == code
            )
            for code in {f"{request.status} {request.problem_code}" for request in requests if request.failed}
        },
        "p50_ms": percentile(durations, 0.50),
        "p95_ms": percentile(durations, 0.95),
    }


def busy_cpu(readings: list[dict]) -> float | None:
    """The CPU per pod the HPA read once the load had run a minute (its rate window filled)."""
    values = [
        r["cpu_m_per_pod"] for r in readings if r["cpu_m_per_pod"] is not None and r["at"] - readings[0]["at"] > 60
    ]
    return max(values) if values else None


def login_seconds() -> float:
    """CPU seconds of one password hash as auth computes a login's (Django's PBKDF2 hasher at its
    iterations, the pinned Django the image installs too), on this machine: the median of three."""
    hasher, costs = PBKDF2PasswordHasher(), []
    for _ in range(3):
        started = time.process_time()
        hasher.encode("correct horse battery staple", hasher.salt())
        costs.append(time.process_time() - started)
    return sorted(costs)[1]


# k6 starts whole iterations per time unit: the logins' rate is counted per 10 s.
LOGIN_TIME_UNIT_SECONDS = 10


def login_rate(seconds_each: float) -> int:
    """Logins per LOGIN_TIME_UNIT_SECONDS that take about LOGIN_CORES of auth's CPU."""
    return max(1, round(LOGIN_CORES * LOGIN_TIME_UNIT_SECONDS / seconds_each))


def test_login_rate_asks_for_the_cores_whatever_a_login_costs():
    assert (login_rate(0.27), login_rate(0.6), login_rate(20.0)) == (44, 20, 1)


def test_auth_scales_out_when_logins_make_it_cpu_bound(cluster, tmp_path):
    live = cluster.live_color("auth")
    start = autoscaler_reading(cluster, "auth")
    before = start["current"]
    login_cost = login_seconds()
    rate = login_rate(login_cost)
    load = Load(
        cluster=cluster,
        workdir=tmp_path,
        rate=rate,
        time_unit_seconds=LOGIN_TIME_UNIT_SECONDS,
        mode="logins",
        users=12,
    )
    load.start()
    began = time.time()
    try:
        readings = watched(
            cluster, "auth", load, SCALE_OUT_WITHIN, until=lambda readings: readings[-1]["current"] > before
        )
        scaled = readings[-1]["current"] > before
        if scaled:  # the new pod serving, or a failure here (wait_until)
            wanted = readings[-1]["current"]
            wait_until(
                lambda: (cluster.deployment("auth", live).status.available_replicas or 0) >= wanted,
                timeout=120,
                interval=2,
                message=f"auth-{live} serving with {wanted} pods",
            )
            readings += watched(cluster, "auth", load, 20)
    finally:
        result = load.stop()
    logins = outcome(result, "login")
    RECORD["auth"] = {
        "color": live,
        "rate": round(rate / LOGIN_TIME_UNIT_SECONDS, 2),
        "login_cpu_s": round(login_cost, 3),
        "replicas_before": before,
        "threshold_m": threshold_m(cluster, "auth"),
        "scaled_after_seconds": next((round(r["at"] - began, 1) for r in readings if r["current"] > before), None),
        "readings": readings,
        "logins": logins,
        "k6_exit": result.exit_code,
    }
    assert scaled, (
        f"auth still at {before} pods after {SCALE_OUT_WITHIN} s of {RECORD['auth']['rate']} logins/s: {readings}"
    )
    assert logins["failed"] == 0, logins


@pytest.mark.timeout(900)  # two loads of HOLD_SECONDS, a deploy, a promote and a rollback
def test_orders_is_not_scaled_while_it_waits_on_a_slow_payments(cluster, slow_image, tmp_path):
    """The same placements at the same rate, payments healthy and then 0.8 s slower per request (its
    slow release, promoted without the gate): orders' latency and its threads held waiting go up, its
    CPU does not, and the HPA keeps orders' pods. That is right: another orders pod would only open more
    calls into the same slow payments."""
    live = cluster.live_color("orders")
    payments_live = cluster.live_color("payments")
    payments_image = cluster.image("payments", payments_live)
    start = autoscaler_reading(cluster, "orders")
    phases = {}
    for phase in ("payments healthy", "payments slow"):
        if phase == "payments slow":
            cluster.bluegreen("deploy", "payments", slow_image)
            cluster.bluegreen("promote", "payments", "--image", slow_image, "--skip-gate", "--watch", "0")
            # orders' pooled keep-alive connections stay on the old color after a switch, until it goes.
            cluster.bluegreen("scale-down", "payments", "--drain-seconds", "0")
            again = cluster.bluegreen("scale-down", "payments", "--drain-seconds", "0")
            assert "is at zero already; nothing to do" in again, again
        try:
            load = Load(cluster=cluster, workdir=tmp_path / phase.replace(" ", "-"), rate=ORDER_RATE, mode="orders")
            load.workdir.mkdir()
            load.start()
            try:
                readings = watched(cluster, "orders", load, HOLD_SECONDS)
            finally:
                result = load.stop()
        finally:
            if phase == "payments slow":
                # Back the way it came (the old color is at zero, so not by rollback): the image that
                # was live, deployed, promoted, and the slow color scaled down.
                cluster.bluegreen("deploy", "payments", payments_image)
                cluster.bluegreen("promote", "payments", "--image", payments_image, "--skip-gate", "--watch", "0")
                cluster.bluegreen("scale-down", "payments", "--drain-seconds", "0")
                # Until the slow color's pods are gone, orders' pooled connections may still reach them.
                slow_color = other_color(cluster.live_color("payments"))
                wait_until(
                    lambda color=slow_color: not cluster.pods("payments", color),
                    timeout=180,
                    interval=2,
                    message=f"payments-{slow_color}'s pods gone",
                )
        phases[phase] = {"readings": readings, "placements": outcome(result, "order_create")}
    assert cluster.image("payments", cluster.live_color("payments")) == payments_image
    RECORD["orders"] = {
        "color": live,
        "rate": ORDER_RATE,
        "replicas_before": start["current"],
        "threshold_m": threshold_m(cluster, "orders"),
        "phases": phases,
    }

    healthy, slow = phases["payments healthy"], phases["payments slow"]
    assert healthy["placements"]["failed"] == 0, healthy["placements"]
    # Payments' 0.8 s reaches orders' answers: the placements wait on it.
    assert slow["placements"]["p50_ms"] >= 800 > healthy["placements"]["p50_ms"], phases
    # What failed, failed as designed: 503 payments_unavailable, the bulkhead full (the order pending,
    # settled later), never a 500 or a timeout.
    assert set(slow["placements"]["failures_by_code"]) <= {"503 payments_unavailable"}, slow["placements"]
    # The HPA saw orders' CPU stay under its threshold and added no pod.
    assert busy_cpu(slow["readings"]) is not None, slow["readings"]
    assert busy_cpu(slow["readings"]) < RECORD["orders"]["threshold_m"], slow["readings"]
    assert max(r["desired"] for r in slow["readings"]) <= start["current"], slow["readings"]


def test_the_autoscaling_numbers_are_recorded(cluster):
    assert {"auth", "orders"} <= set(RECORD), "the drills above did not run"
    RECORD["machine"] = machine(cluster)
    day = datetime.datetime.now(tz=datetime.UTC).date().isoformat()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{day}-cluster-autoscaling.json").write_text(json.dumps(RECORD, indent=2, default=str) + "\n")
    (RESULTS / f"{day}-cluster-autoscaling.md").write_text(report(RECORD, day))


def report(record: dict, day: str) -> str:
    m, auth, orders = record["machine"], record["auth"], record["orders"]
    logins = auth["logins"]
    lines = [
        f"# Autoscaling on the {'kind' if KIND_CLUSTER else 'local'} cluster, {day}",
        "",
        f"Recorded by `make cluster-test` (tests/cluster/test_scaling.py) at commit `{m['commit']}`.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in m.items() if key != "commit"),
        "",
        'Every HPA adds a pod past an average of 500m of CPU per pod (deploy/README.md, "Autoscaling").',
        "",
        "## auth under logins: CPU-bound, scaled out",
        "",
        f"perf/k6/cluster.js MODE=logins at {auth['rate']}/s (achieved {logins['per_second']}/s): one password",
        f"login per iteration, the rate for about {LOGIN_CORES} cores at {auth['login_cpu_s']} s of CPU per password",
        f"hash measured on this machine. auth went from {auth['replicas_before']} pods to more after"
        f" {auth['scaled_after_seconds']} s; {logins['requests']} logins, {logins['failed']} failed,"
        f" p50 {logins['p50_ms']} ms, p95 {logins['p95_ms']} ms.",
        "",
        "| s | CPU per pod (m) | current | desired |",
        "|---:|---:|---:|---:|",
    ]
    first = auth["readings"][0]["at"]
    lines += [
        f"| {r['at'] - first:.0f} | {r['cpu_m_per_pod']} | {r['current']} | {r['desired']} |" for r in auth["readings"]
    ]
    lines += [
        "",
        "## orders waiting on a slow payments: not CPU-bound, not scaled",
        "",
        f"perf/k6/cluster.js MODE=orders at {orders['rate']}/s: one order placement per iteration, for"
        f" {HOLD_SECONDS} s with payments healthy, then {HOLD_SECONDS} s with payments 0.8 s slower per request",
        "(tests/cluster/slow-release, promoted without the gate, the old color scaled down so that orders'",
        "pooled connections reach it; the previous image released again after).",
        "",
        "| phase | placements | per s | failed | p50 ms | p95 ms | CPU per pod, busiest (m) | most pods desired |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for phase, data in orders["phases"].items():
        p = data["placements"]
        failed = ", ".join(f"{count} x {code}" for code, count in p["failures_by_code"].items()) or "0"
        lines.append(
            f"| {phase} | {p['requests']} | {p['per_second']} | {failed} | {p['p50_ms']} | {p['p95_ms']}"
            f" | {busy_cpu(data['readings'])} | {max(r['desired'] for r in data['readings'])} |"
        )
    return "\n".join(lines) + "\n"
