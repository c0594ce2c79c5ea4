"""Failure drills under load (`make drills`): a fault injected into the running platform while k6
keeps a constant arrival rate of journeys, and a verdict in numbers.

Each drill starts the four services, their relays and the email worker for real on 127.0.0.1
(tests/live.py, PostgreSQL), runs perf/k6/drill.js (journey.js at RATE journeys/s) and, part-way
through, injects its fault; every request k6 sent is then judged by when it was sent (before,
during or after the fault) and what it got, and the databases are checked for what was lost or
duplicated once the relays have drained:

- notifications-down: notifications stopped for 60 s, then started again. Orders and payments keep
  answering; every event the outboxes held is delivered after, each once.
- payments-slow: every request from orders to payments waits 1.5 s for 30 s. Placing an order takes
  that much longer, or, beyond the bulkhead's calls in flight, is refused at once with a 503 (the
  order left pending, charged by the settle job); orders' reads do not wait behind it (its threads
  do not run out).
- auth-hung: auth accepts connections and never answers, for 40 s, past the services' key cache
  lifetime. Token-verified reads and order placement keep working.
- postgres-restart: the PostgreSQL server restarted under the load. Readiness flips and recovers,
  the requests that fail meanwhile fail as 503 problems (never 500), and nothing is lost or half done.

Results: perf/results/<date>-drills.md (and .json), with the machine described.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from bench import K6, git_commit, machine_description  # noqa: E402

from tests.faults import FaultLine  # noqa: E402
from tests.live import OUTBOX_TABLES, Databases, Stack, stack_start  # noqa: E402

logger = logging.getLogger("drills")
PERF = REPO / "perf"
SERVICES = ("auth", "orders", "payments", "notifications")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform"
READS = ("order_list", "order_detail")


@dataclass(frozen=True)
class Request:
    started: float  # epoch seconds
    name: str
    status: int  # 0: no answer (refused, reset, timed out)
    seconds: float

    @property
    def failed(self) -> bool:
        return not 200 <= self.status < 300


def requests_from_k6(path: Path) -> list[Request]:
    """Every HTTP request of a k6 JSON output (`--out json=`), by the time it was sent."""
    found = []
    with path.open() as lines:
        for line in lines:
            point = json.loads(line)
            if point.get("type") != "Point" or point.get("metric") != "http_req_duration":
                continue
            data = point["data"]
            ended = dt.datetime.fromisoformat(data["time"]).timestamp()
            seconds = data["value"] / 1000
            tags = data.get("tags", {})
            found.append(Request(ended - seconds, tags.get("name", "?"), int(tags.get("status") or 0), seconds))
    return sorted(found, key=lambda request: request.started)


@dataclass
class Window:
    """When the fault lasted (epoch seconds); `settle` seconds after it still count as its aftermath."""

    start: float
    end: float
    settle: float = 0.0

    def phase(self, request: Request) -> str:
        if request.started < self.start:
            return "before"
        if request.started < self.end + self.settle:
            return "during"
        return "after"


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Stats:
    count: int
    failed: int
    statuses: dict[int, int]
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, picked: list[Request]) -> Stats:
        statuses: dict[int, int] = {}
        for request in picked:
            statuses[request.status] = statuses.get(request.status, 0) + 1
        durations = [request.seconds * 1000 for request in picked]
        return cls(
            count=len(picked),
            failed=sum(request.failed for request in picked),
            statuses=dict(sorted(statuses.items())),
            p95_ms=round(percentile(durations, 0.95), 1),
            p99_ms=round(percentile(durations, 0.99), 1),
            max_ms=round(max(durations, default=0.0), 1),
        )


def table(sent: list[Request], window: Window) -> dict[str, dict[str, Stats]]:
    """Stats per request name and phase."""
    grouped: dict[str, dict[str, list[Request]]] = {}
    for request in sent:
        grouped.setdefault(request.name, {}).setdefault(window.phase(request), []).append(request)
    return {
        name: {phase: Stats.of(phases.get(phase, [])) for phase in ("before", "during", "after")}
        for name, phases in sorted(grouped.items())
    }


@dataclass
class Verdict:
    what: str
    measured: str
    passed: bool


class ReadinessWatch:
    """Polls every service's /readyz four times a second while the drill runs."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in SERVICES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for name in SERVICES:
                try:
                    status = requests.get(f"{self.stack[name].url}/readyz", timeout=1).status_code
                except requests.RequestException:
                    status = 0
                self.samples[name].append((time.time(), status))

    def not_ready_seconds(self, name: str) -> float:
        """How long the service answered anything but 200 (0 when it never flipped)."""
        down = [at for at, status in self.samples[name] if status != 200]
        return round(max(down) - min(down) + 0.25, 2) if down else 0.0


@dataclass
class Ledger:
    """What the databases hold once the relays are done: nothing lost, nothing twice."""

    orders_by_status: dict[str, int]
    events_emitted: int
    events_undelivered: int
    events_processed: int
    notifications: int
    redeliveries_dropped: int
    emitted_not_processed: int
    paid_without_capture: int

    @classmethod
    def read(cls, stack: Stack) -> Ledger:
        by_status = dict(stack["orders"].sql("SELECT status, count(*) FROM orders_order GROUP BY status ORDER BY 1"))
        emitted = set()
        for service, outbox in OUTBOX_TABLES.items():
            emitted |= {row[0] for row in stack[service].sql(f"SELECT id FROM {outbox}")}  # noqa: S608
        undelivered = stack.events_undelivered()
        processed = {row[0] for row in stack["notifications"].sql("SELECT event_id FROM notifications_processedevent")}
        paid = {row[0] for row in stack["orders"].sql("SELECT id FROM orders_order WHERE status = 'paid'")}
        captured = {
            row[0] for row in stack["payments"].sql("SELECT order_id FROM payments_payment WHERE status = 'succeeded'")
        }
        return cls(
            orders_by_status=by_status,
            events_emitted=len(emitted),
            events_undelivered=undelivered,
            events_processed=len(processed),
            notifications=stack["notifications"].sql("SELECT count(*) FROM notifications_notification")[0][0],
            redeliveries_dropped=stack["notifications"].sql(
                "SELECT coalesce(sum(times_received - 1), 0) FROM notifications_processedevent"
            )[0][0],
            emitted_not_processed=len(emitted - processed),
            paid_without_capture=len(paid - captured),
        )

    def verdicts(self) -> list[Verdict]:
        return [
            Verdict("every event delivered", f"{self.events_undelivered} undelivered", self.events_undelivered == 0),
            Verdict(
                "every event processed by notifications, once",
                f"{self.events_emitted} emitted, {self.events_processed} processed, {self.emitted_not_processed} "
                f"missing; {self.notifications} notifications; {self.redeliveries_dropped} redeliveries dropped",
                self.emitted_not_processed == 0 and self.notifications == self.events_processed,
            ),
            Verdict(
                "no order left half done",
                f"{self.orders_by_status}; paid without a capture: {self.paid_without_capture}",
                self.orders_by_status.get("pending", 0) == 0 and self.paid_without_capture == 0,
            ),
        ]


@dataclass
class Context:
    stack: Stack
    lines: dict[str, FaultLine]
    window: Window
    readiness: ReadinessWatch | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Drill:
    name: str
    describe: str
    fault_seconds: float
    settle_seconds: float  # after the fault ends, how long failures still count as its aftermath
    # Which services reach which dependency through a FaultLine: {line name: (callers, target service)}.
    lines: dict[str, tuple[tuple[str, ...], str]]
    env: dict[str, dict[str, str]]
    inject: Callable[[Context], None]
    recover: Callable[[Context], None]
    judge: Callable[[Context, dict[str, dict[str, Stats]]], list[Verdict]]


def no_failures(stats: dict[str, dict[str, Stats]], names: tuple[str, ...], phases: tuple[str, ...]) -> Verdict:
    failed = {f"{name} {phase}": stats[name][phase].failed for name in names for phase in phases if name in stats}
    total = sum(stats[name][phase].count for name in names for phase in phases if name in stats)
    return Verdict(
        f"{', '.join(names)}: no failed request ({', '.join(phases)})",
        f"{sum(failed.values())} failed of {total}",
        total > 0 and not any(failed.values()),
    )


def no_server_errors(stats: dict[str, dict[str, Stats]]) -> Verdict:
    errors = {
        f"{name} {phase}": status_count
        for name, phases in stats.items()
        for phase, phase_stats in phases.items()
        for status, status_count in phase_stats.statuses.items()
        if status == 500
    }
    return Verdict("no 500 answer anywhere", f"{sum(errors.values())} ({errors or 'none'})", not errors)


# --- the drills -----------------------------------------------------------------------------------


def notifications_stop(context: Context) -> None:
    context.stack["notifications"].stop()


def notifications_start(context: Context) -> None:
    context.stack["notifications"].start(timeout=60)


def notifications_judge(context: Context, stats: dict[str, dict[str, Stats]]) -> list[Verdict]:
    inbox = stats.get("inbox", {})
    return [
        no_failures(stats, ("order_create", *READS), ("before", "during", "after")),
        Verdict(
            "inbox reads fail only while notifications is down",
            f"before {inbox['before'].failed}, during {inbox['during'].failed} of {inbox['during'].count}, after "
            f"{inbox['after'].failed}",
            inbox["before"].failed == 0 and inbox["after"].failed == 0,
        ),
    ]


def line_slow(context: Context) -> None:
    context.lines["payments"].slow(PAYMENTS_DELAY_SECONDS)


def line_hang(context: Context) -> None:
    context.lines["auth"].hang()


def line_recover(context: Context) -> None:
    for line in context.lines.values():
        line.recover()


PAYMENTS_DELAY_SECONDS = 1.5


def payments_slow_judge(context: Context, stats: dict[str, dict[str, Stats]]) -> list[Verdict]:
    create, reads = stats["order_create"], [stats[name] for name in (*READS, "inbox")]
    baseline_p95 = max(read["before"].p95_ms for read in reads)
    during_p95 = max(read["during"].p95_ms for read in reads)
    bound_ms = PAYMENTS_DELAY_SECONDS * 1000 + 2 * create["before"].p99_ms + 500
    during = create["during"].statuses
    return [
        no_server_errors(stats),
        no_failures(stats, (*READS, "inbox"), ("before", "during", "after")),
        no_failures(stats, ("order_create",), ("before", "after")),
        Verdict(
            "placements while payments is slow: charged (201) or refused at once by the bulkhead (503), bounded "
            f"(p99 under {bound_ms:.0f} ms)",
            f"{during}; p99 before {create['before'].p99_ms} ms, during {create['during'].p99_ms} ms, after "
            f"{create['after'].p99_ms} ms",
            set(during) <= {201, 503} and create["during"].p99_ms < bound_ms,
        ),
        Verdict(
            "reads do not queue behind the slow placements (p95 under 300 ms or 3x before)",
            f"p95 before {baseline_p95} ms, during {during_p95} ms",
            during_p95 < max(300.0, 3 * baseline_p95),
        ),
    ]


def auth_hung_judge(context: Context, stats: dict[str, dict[str, Stats]]) -> list[Verdict]:
    return [no_failures(stats, ("order_create", *READS, "inbox"), ("before", "during", "after"))]


def postgres_restart(context: Context) -> None:
    version = next(Path("/etc/postgresql").iterdir()).name
    started = time.monotonic()
    subprocess.run(  # noqa: S603
        [shutil.which("pg_ctlcluster") or "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    context.notes.append(f"pg_ctlcluster restart took {time.monotonic() - started:.1f} s")


def nothing(context: Context) -> None:
    """The fault ends by itself (a restart is over when the command returns)."""


def postgres_judge(context: Context, stats: dict[str, dict[str, Stats]]) -> list[Verdict]:
    not_ready = {name: context.readiness.not_ready_seconds(name) for name in SERVICES}
    failed_during: dict[int, int] = {}
    for phases in stats.values():
        for status, count in phases["during"].statuses.items():
            if not 200 <= status < 300:
                failed_during[status] = failed_during.get(status, 0) + count
    return [
        no_server_errors(stats),
        no_failures(stats, ("order_create", *READS, "inbox"), ("before", "after")),
        Verdict(
            "readiness flipped and recovered",
            ", ".join(f"{name} not ready {seconds} s" for name, seconds in not_ready.items()),
            all(context.readiness.samples[name][-1][1] == 200 for name in SERVICES),
        ),
        Verdict("what failed meanwhile, by status", str(failed_during or "nothing"), 500 not in failed_during),
    ]


DRILLS = {
    drill.name: drill
    for drill in (
        Drill(
            name="notifications-down",
            describe="notifications stopped for 60 s, then started again on its port",
            fault_seconds=60,
            settle_seconds=15,
            lines={},
            env={},
            inject=notifications_stop,
            recover=notifications_start,
            judge=notifications_judge,
        ),
        Drill(
            name="payments-slow",
            describe=f"every request from orders to payments waits {PAYMENTS_DELAY_SECONDS} s, for 30 s",
            fault_seconds=30,
            settle_seconds=5,
            lines={"payments": (("orders",), "payments")},
            env={},
            inject=line_slow,
            recover=line_recover,
            judge=payments_slow_judge,
        ),
        Drill(
            name="auth-hung",
            describe="auth accepts connections and never answers, for 40 s; the services' key cache lives 10 s",
            fault_seconds=40,
            settle_seconds=5,
            lines={"auth": (("orders", "payments", "notifications"), "auth")},
            # The key cache expires during the hang: the services keep verifying with the keys they have.
            env={"all": {"JWKS_CACHE_SECONDS": "10", "JWKS_MIN_REFRESH_INTERVAL_SECONDS": "1"}},
            inject=line_hang,
            recover=line_recover,
            judge=auth_hung_judge,
        ),
        Drill(
            name="postgres-restart",
            describe="the PostgreSQL server restarted (pg_ctlcluster restart, fast shutdown)",
            fault_seconds=0,
            settle_seconds=15,
            lines={},
            env={},
            inject=postgres_restart,
            recover=nothing,
            judge=postgres_judge,
        ),
    )
}


# --- running one --------------------------------------------------------------------------------


@dataclass
class Outcome:
    drill: Drill
    stats: dict[str, dict[str, Stats]]
    verdicts: list[Verdict]
    notes: list[str]
    ledger: Ledger

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)


def drain(stack: Stack, *, timeout: float) -> float:
    """Seconds until every outbox is delivered (the relays keep working after k6 stops)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not stack.events_undelivered():
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return float("inf")


def run_drill(drill: Drill, arguments: argparse.Namespace, workdir: Path) -> Outcome:
    lines = {name: FaultLine() for name in drill.lines}
    env = {caller: dict(values) for caller, values in drill.env.items()}
    for line_name, (callers, target) in drill.lines.items():
        for caller in callers:
            env.setdefault(caller, {})[f"{target.upper()}_URL"] = lines[line_name].url
    databases = Databases(workdir, arguments.database_url)
    started = stack_start(workdir, databases, SERVICES, env=env)
    try:
        stack = next(started)
        for line_name, (_, target) in drill.lines.items():
            lines[line_name].target = ("127.0.0.1", stack[target].port)
        before_fault = arguments.before_seconds
        duration = before_fault + drill.fault_seconds + drill.settle_seconds + arguments.after_seconds
        k6_output = workdir / f"{drill.name}.k6.json"
        k6_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            "K6_NO_USAGE_REPORT": "true",
            **{f"{name.upper()}_URL": stack[name].url for name in SERVICES},
            "RATE": str(arguments.rate),
            "DURATION": f"{duration:.0f}s",
            "SUMMARY_FILE": str(workdir / f"{drill.name}.summary.json"),
        }
        command = [str(K6), "run", "--no-usage-report", "--quiet", "--out", f"json={k6_output}", "perf/k6/drill.js"]
        logger.info(
            "%s: k6 at %d journeys/s for %.0f s; the fault after %d s",
            drill.name,
            arguments.rate,
            duration,
            before_fault,
        )
        with ReadinessWatch(stack) as readiness:
            with (workdir / f"{drill.name}.k6.log").open("wb") as k6_log:
                k6 = subprocess.Popen(command, cwd=REPO, env=k6_env, stdout=k6_log, stderr=subprocess.STDOUT)  # noqa: S603
            try:
                # k6 logs its users in first (setup), a few seconds; the fault waits for the load.
                wait_for_load(k6_output, timeout=60)
                time.sleep(before_fault)
                context = Context(stack=stack, lines=lines, window=Window(time.time(), 0.0), readiness=readiness)
                logger.info("%s: %s", drill.name, drill.describe)
                drill.inject(context)
                time.sleep(drill.fault_seconds)
                drill.recover(context)
                context.window.end = time.time()
                context.window.settle = drill.settle_seconds
                k6.wait(timeout=duration + 120)
            finally:
                if k6.poll() is None:
                    k6.kill()
                    k6.wait()
        drained = drain(stack, timeout=120)
        context.notes.append(f"outboxes drained {drained} s after the load ended")
        # What the settle CronJob does in the cluster: orders left pending by a 503 are charged now.
        settled = stack["orders"].manage("order_payments_settle", "--older-than", "0").stdout.strip()
        if settled:
            context.notes.append(f"order_payments_settle: {settled.splitlines()[-1]}")
        ledger = Ledger.read(stack)
        stats = table(requests_from_k6(k6_output), context.window)
        verdicts = drill.judge(context, stats) + ledger.verdicts()
        return Outcome(drill=drill, stats=stats, verdicts=verdicts, notes=context.notes, ledger=ledger)
    finally:
        started.close()
        databases.drop_all()
        for line in lines.values():
            line.close()


def wait_for_load(k6_output: Path, *, timeout: float) -> None:
    """Until k6 has sent its first journey request (its setup, the users' logins, is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if k6_output.exists() and '"name":"order_create"' in k6_output.read_text():
            return
        time.sleep(0.5)
    raise TimeoutError(f"k6 sent no journey within {timeout} s")


# --- the report -----------------------------------------------------------------------------------


def report(outcomes: list[Outcome], arguments: argparse.Namespace, machine: dict[str, str]) -> str:
    lines = [
        f"# Failure drills under load, {arguments.date}",
        "",
        f"Recorded by `make drills` (perf/drills.py) at commit `{git_commit()}`: the four services, their relays and",
        "the email worker on 127.0.0.1 (gunicorn, PostgreSQL), k6 (perf/k6/drill.js: the journey of journey.js)",
        f"at a constant {arguments.rate} journeys/s, the fault {arguments.before_seconds} s into the load.",
        "Phases: *before* the fault, *during* it and its aftermath (the settle time after it ended), *after*.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
    ]
    for outcome in outcomes:
        drill = outcome.drill
        lines += [
            f"## {drill.name}: {'passed' if outcome.passed else 'FAILED'}",
            "",
            f"{drill.describe}; settle time {drill.settle_seconds:.0f} s.",
            "",
            "| request | phase | count | failed | statuses | p95 ms | p99 ms | max ms |",
            "|---|---|---:|---:|---|---:|---:|---:|",
        ]
        for name, phases in outcome.stats.items():
            for phase, stats in phases.items():
                if not stats.count:
                    continue
                statuses = ", ".join(f"{status}: {count}" for status, count in stats.statuses.items())
                lines.append(
                    f"| {name} | {phase} | {stats.count} | {stats.failed} | {statuses} | {stats.p95_ms} | "
                    f"{stats.p99_ms} | {stats.max_ms} |"
                )
        lines += ["", "| check | measured | verdict |", "|---|---|---|"]
        lines += [f"| {v.what} | {v.measured} | {'ok' if v.passed else 'FAILED'} |" for v in outcome.verdicts]
        lines += ["", *(f"- {note}" for note in outcome.notes), ""]
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drills", nargs="*", metavar="DRILL", help=f"which: {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--rate", type=int, default=4, help="journeys started per second (default 4)")
    parser.add_argument("--before-seconds", type=int, default=15, help="load before the fault (default 15)")
    parser.add_argument("--after-seconds", type=int, default=15, help="load after the settle time (default 15)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--results", default=str(PERF / "results"), help="folder of the report (default perf/results)")
    parser.add_argument("--date", default=dt.datetime.now(tz=dt.UTC).date().isoformat())
    parser.add_argument("--keep", type=Path, help="keep k6's output and the services' logs in this folder")
    arguments = parser.parse_args(argv)
    unknown = [name for name in arguments.drills if name not in DRILLS]
    if unknown:
        parser.error(f"no such drill: {', '.join(unknown)} (there are {', '.join(DRILLS)})")
    if not arguments.database_url.startswith("postgres://"):
        parser.error("the drills run on PostgreSQL: --database-url postgres://...")
    restarts = "postgres-restart" in (arguments.drills or DRILLS)
    if restarts and "@127.0.0.1:" not in arguments.database_url:
        parser.error("postgres-restart restarts this machine's server (pg_ctlcluster): use one on 127.0.0.1")
    return arguments


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    arguments = parse(argv)
    machine = machine_description("postgres", arguments.database_url)
    outcomes = []
    for name in arguments.drills or list(DRILLS):
        if arguments.keep:
            workdir = arguments.keep / name
            workdir.mkdir(parents=True, exist_ok=True)
            outcome = run_drill(DRILLS[name], arguments, workdir)
        else:
            with tempfile.TemporaryDirectory(prefix=f"drill-{name}-") as temporary:
                outcome = run_drill(DRILLS[name], arguments, Path(temporary))
        outcomes.append(outcome)
        for verdict in outcome.verdicts:
            logger.info("%s  %s: %s", "ok    " if verdict.passed else "FAILED", verdict.what, verdict.measured)
    results = Path(arguments.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{arguments.date}-drills"
    stem.with_suffix(".md").write_text(report(outcomes, arguments, machine) + "\n")
    stem.with_suffix(".json").write_text(
        json.dumps(
            [
                {
                    "drill": outcome.drill.name,
                    "passed": outcome.passed,
                    "verdicts": [vars(verdict) for verdict in outcome.verdicts],
                    "stats": {
                        name: {phase: vars(s) for phase, s in phases.items()} for name, phases in outcome.stats.items()
                    },
                    "notes": outcome.notes,
                }
                for outcome in outcomes
            ],
            indent=2,
        )
        + "\n"
    )
    logger.info("wrote %s.md", stem)
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
