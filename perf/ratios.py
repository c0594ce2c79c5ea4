"""Side-by-side benchmark: the services' hot requests as a ratio of a bare Django view's throughput.

    .venv/bin/python perf/bench.py --scenario ratios                  # SQLite, then PostgreSQL (make bench)
    .venv/bin/python perf/bench.py --scenario ratios --db sqlite --duration 30s

Absolute requests per second say as much about the machine (and whatever else it runs) as about the
code. Here every phase of one run shares the machine with a ceiling measured in that same run: a
bare Django project (perf/bare: one JSON view, no middleware, no database) served by the platform's
own platform/gunicorn.conf.py with the same workers and threads. Its throughput is what Django and
gunicorn cost on this machine, and the goals are ratios to it:

- P1: `GET /api/orders/{id}/` with a valid access token (verified locally, the caller's own order)
  at READ_VUS closed-loop virtual users, at least 0.50 of the bare view at the same VUs, no error;
- P2: `POST /api/orders/` with a unique Idempotency-Key (orders stores it, payments charges it, both
  write their outbox rows, the relays deliver to notifications), at CREATE_VUS, at least 0.10 of the
  bare view at the same VUs, no error, p99 under 1 s;
- P4: every service's worker under 120 MiB resident throughout, and orders with 2 workers serving the
  token-verified read at least 1.7 times what it serves with 1.

P1 is taken apart by one more phase each round: `GET /floor/`, an empty token-verified read served
with orders' own settings (perf/floor: the same middleware, URLconf and token check, nothing read).
The floor over the bare view is what the platform's request handling leaves of Django's; the order
read over the floor is what the order's own work (its database read and its body) leaves of that.
P1 is their product.

The ceiling moves: two quiet runs on the same kind of machine have measured the bare view at 1,729
and 2,238 requests a second. So a run is ROUNDS rounds (default 3) of floor-read, bare-read,
order-read, bare-create, order-create: each ratio is taken within a round, from two phases measured
close together, and a goal is judged on the median of the rounds' ratios. Errors count in every round, and P2's p99
is that of the worst round. Before each phase the run waits until the platform has delivered what
the phases before it left (outbox events and emails, BACKLOG_GAUGES), so that no phase shares the
machine with the deliveries of the previous round's placements.

The platform is started as perf/bench.py starts it (tests/live.py: gunicorn with the production
config, DEBUG off, own database per service, relays and the email worker running). Each phase is one
k6 run (perf/k6/ratios.js, closed loop: every virtual user waits for its answer); while it runs, CPU
time and resident memory of every process are read from /proc once a second, so each phase also
gives CPU milliseconds per request of each service, and the CPU the rest of the machine used
meanwhile (a busy machine shows there). Results: perf/results/<date>-ratios[-tag].md and .json.
Exit status 0 when every goal held on every database, 1 otherwise (the results are written either way).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import (
    K6,
    PERF,
    REPO,
    SERVICES,
    PostgresBackends,
    ProcessGroup,
    Sampler,
    git_commit,
    machine_description,
)

from tests.client import scrape
from tests.live import BIN, GUNICORN_CONFIG, Databases, LiveService, LoggedProcess, Stack, free_port, stack_start

logger = logging.getLogger("bench.ratios")

SCRIPT = PERF / "k6" / "ratios.js"
FLOOR_SETTINGS = "perf.floor.settings"
P1_RATIO = 0.50
P2_RATIO = 0.10
P2_P99_MS = 1000.0
P4_WORKER_RSS_MIB = 120
P4_SCALING = 1.7
MIB = 1024 * 1024
# Every server of a run, the bare view's included, keeps its workers for the whole run (gunicorn's
# `max_requests` off). Under the platform's 100,000 a bare view worker serving 2,000 and more
# requests a second is replaced every minute or so, inside a phase of its own nearly every round, and
# a phase in which one is replaced serves less while Django is imported again and its connections
# move: the ceiling is held down, lumpily, where a service worker serving a tenth of that is not.
# Off, the workers' memory is also measured over the whole run, not reset every 100,000 requests.
WORKERS_KEPT = {"GUNICORN_MAX_REQUESTS": "0"}
# What a phase of placements leaves behind, as each web process's /metrics reports it: outbox events
# not yet delivered (orders', payments') and emails not yet sent (notifications'). The relays,
# notifications and the email worker work it off after the phase, for tens of seconds after a
# round's placements; a phase started meanwhile shares the machine with them (the bare view lost a
# third of its rate to them in the rounds after the first), so each phase waits until it is gone.
BACKLOG_GAUGES = ("outbox_pending_events", "notifications_pending_emails")
SETTLE_SECONDS = 300.0
# Where production's trace sampling is set: `--export-traces` samples as its pods do.
PRODUCTION_OVERLAY = REPO / "deploy" / "overlays" / "production" / "kustomization.yaml"
SAMPLING_SETTINGS = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")


def production_sampling() -> dict[str, str]:
    """The OTEL_TRACES_SAMPLER(_ARG) settings the production overlay patches into platform-config
    (none: OpenTelemetry's default, every trace recorded)."""
    import yaml  # noqa: PLC0415 (only for --export-traces)

    overlay = yaml.safe_load(PRODUCTION_OVERLAY.read_text())
    found = {}
    for patch in overlay.get("patches", []):
        if patch.get("target", {}).get("kind") != "ConfigMap":
            continue
        for operation in yaml.safe_load(patch["patch"]) or []:
            key = operation.get("path", "").removeprefix("/data/")
            if operation.get("op") in ("add", "replace") and key in SAMPLING_SETTINGS:
                found[key] = str(operation["value"])
    return found


def trace_sampling(ratio: float | None) -> dict[str, str]:
    """The sampling of an `--export-traces` run: production's, or a ratio of new traces (1: all)."""
    if ratio is None:
        return production_sampling()
    return {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}"}


# --- the bare view ---------------------------------------------------------------------------------


@dataclass
class BareServer(LoggedProcess):
    """perf/bare under the platform's gunicorn configuration, with the services' workers and threads."""

    workdir: Path
    workers: str
    threads: str
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> BareServer:
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            "DJANGO_SETTINGS_MODULE": "perf.bare.settings",
            "SERVICE": "bare",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": self.workers,
            "GUNICORN_THREADS": self.threads,
            **WORKERS_KEPT,
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"metrics-bare-{self.port}"),
            "DRAIN_FILE": str(self.workdir / f"bare-{self.port}.draining"),
            "GUNICORN_WORKER_TMP_DIR": str(self.workdir),
        }
        # The application named on the command line takes the place of the config's `wsgi_app`;
        # everything else (worker class, threads, timeouts, keep-alive, logging) is the config's.
        self.spawn(
            [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONFIG), "perf.bare.wsgi:application"],
            env=env,
            log_path=self.workdir / f"bare-{self.port}.log",
        )
        deadline = time.monotonic() + timeout
        import requests  # noqa: PLC0415

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bare view exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/bare/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the bare view did not answer within {timeout}s:\n{self.log_text()}")


class TraceSink:
    """An OTLP/HTTP endpoint on 127.0.0.1 that answers every export 200 and keeps only a count of the
    spans: where `--export-traces` sends the platform's spans, so that a run pays what a production
    pod pays for its traces (each sampled span encoded in its worker's export thread and sent) with no
    collector on the machine. It runs in the benchmark's own process, so its CPU is in "rest of the
    machine"."""

    def __init__(self):
        from google.protobuf.message import DecodeError  # noqa: PLC0415 (only for --export-traces)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: PLC0415
            ExportTraceServiceRequest,
        )

        self.spans = 0
        self.exports = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the exporter's session keeps its connection

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    exported = ExportTraceServiceRequest.FromString(body)
                except DecodeError:  # anything but a trace export is refused
                    self.send_response(400)
                else:
                    received = sum(len(scope.spans) for spans in exported.resource_spans for scope in spans.scope_spans)
                    with lock:
                        sink.spans += received
                        sink.exports += 1
                    self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="trace-sink", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def environment(self, sampling: dict[str, str] | None = None) -> dict[str, str]:
        """What makes the platform's processes export their spans here (apps.core.tracing), sampled
        as `sampling` says (OTEL_TRACES_SAMPLER and _ARG; none: every trace)."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, **(sampling or {})}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def floor_server(stack: Stack, workdir: Path) -> LiveService:
    """perf/floor served as orders is: orders' environment (its database, its keys, its workers and
    threads), the platform's gunicorn configuration, the settings module perf/floor's."""
    env = {**stack["orders"].env, "DJANGO_SETTINGS_MODULE": FLOOR_SETTINGS, **WORKERS_KEPT}
    return LiveService(name="orders", env=env, workdir=workdir).start()


# --- measuring the processes -----------------------------------------------------------------------


# --- one phase -------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One k6 run: which request, how many virtual users, how many orders workers, and what it gave."""

    name: str
    target: str
    vus: int
    orders_workers: int
    round: int = 1
    seconds: int = 0
    count: int = 0
    rate: float = 0.0
    median_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    checks_failed: int = 0
    k6_exit_code: int = 0
    cores: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    peak_worker_rss_mib: dict[str, float] = field(default_factory=dict)
    # Workers gunicorn replaced during the phase, by server (with `max_requests` off, WORKERS_KEPT, one
    # that exited or missed its heartbeat): a replaced worker serves nothing while it starts, and the
    # connections it held land on the others.
    workers_replaced: dict[str, int] = field(default_factory=dict)
    # How long the phase waited for the platform's backlog (BACKLOG_GAUGES) before it started, and
    # what was still pending when SETTLE_SECONDS ran out (empty: it started with none).
    settle_seconds: float = 0.0
    unsettled: dict[str, float] = field(default_factory=dict)
    # A placement phase only (`delivery_run`): what its placements had left to deliver when k6 stopped,
    # the seconds until the platform had delivered all of it (None: not within SETTLE_SECONDS, and
    # `undelivered` says what was left), and the CPU seconds each process used meanwhile.
    pending_at_end: dict[str, float] = field(default_factory=dict)
    delivered_seconds: float | None = None
    undelivered: dict[str, float] = field(default_factory=dict)
    delivery_cpu_seconds: dict[str, float] = field(default_factory=dict)


def backlog(stack: Stack) -> dict[str, float]:
    """What the platform still has to deliver, by series (`orders orders.orderevent`, `notifications
    emails`), read from every service's /metrics as Prometheus reads it."""
    return {
        f"{name} {dict(labels).get('outbox', 'emails')}": value
        for name in SERVICES
        for (sample, labels), value in scrape(f"{stack[name].url}/metrics").items()
        if sample in BACKLOG_GAUGES
    }


def settle(stack: Stack, *, timeout: float = SETTLE_SECONDS, interval: float = 0.5) -> tuple[float, dict[str, float]]:
    """Wait until nothing is pending in `backlog()`, at most `timeout` seconds: the seconds waited,
    and what was still pending (empty when it settled)."""
    started = time.monotonic()
    while True:
        pending = {series: value for series, value in backlog(stack).items() if value}
        waited = time.monotonic() - started
        if not pending or waited >= timeout:
            return waited, pending
        time.sleep(interval)


def phase_run(
    phase: Phase,
    *,
    stack: Stack,
    bare: BareServer,
    floor: LiveService,
    processes: list[ProcessGroup],
    marker: str | None,
    args,
    workdir: Path,
) -> Phase:
    seconds = args.phase_seconds
    summary_path = workdir / f"summary-{phase.name}.json"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "K6_NO_USAGE_REPORT": "true",  # the run talks to 127.0.0.1 and nothing else
        **{f"{name.upper()}_URL": stack[name].url for name in SERVICES},
        "BARE_URL": bare.url,
        "FLOOR_URL": floor.url,
        "TARGET": phase.target,
        "VUS": str(phase.vus),
        "USERS": str(args.users),
        "DURATION": f"{seconds}s",
        "SUMMARY_FILE": str(summary_path),
    }
    command = [str(K6), "run", "--no-usage-report", "--quiet", str(SCRIPT)]
    logger.info("round %d, phase %s: %s at %d VUs for %d s", phase.round, phase.name, phase.target, phase.vus, seconds)
    postgres = PostgresBackends(marker) if marker is not None else None
    with Sampler(processes, postgres=postgres) as sampler:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)  # noqa: S603
        sampler.k6_pid = process.pid
        try:
            phase.k6_exit_code = process.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        finished = time.monotonic()
    summary = json.loads(summary_path.read_text())
    metrics = summary["metrics"]
    values = metrics[f"http_req_duration{{name:{phase.target}}}"]["values"]
    failed = metrics.get(f"http_req_failed{{name:{phase.target}}}", {}).get("values", {})
    phase.seconds = seconds
    phase.count = int(values["count"])
    phase.rate = phase.count / seconds
    phase.median_ms, phase.p95_ms, phase.p99_ms, phase.max_ms = (
        values["med"],
        values["p(95)"],
        values["p(99)"],
        values["max"],
    )
    phase.errors = int(failed.get("passes", 0))
    phase.checks_failed = int(metrics["checks"]["values"]["fails"])
    # The steady part of the phase: its last seconds before k6 exited, without setup() and its logins.
    _, phase.cores = sampler.cores(finished - seconds + 1, finished - 1)
    phase.cpu_ms_per_request = {
        name: cores * 1000 / phase.rate if phase.rate else 0.0
        for name, cores in phase.cores.items()
        if name != "stolen by the hypervisor"
    }
    phase.peak_worker_rss_mib = {name: rss / MIB for name, rss in sampler.peak_worker.items()}
    phase.workers_replaced = workers_replaced(
        sampler.workers_seen, workers=args.workers, orders_workers=phase.orders_workers
    )
    return phase


def delivery_run(phase: Phase, *, stack: Stack, processes: list[ProcessGroup], marker: str | None) -> Phase:
    """After a placement phase: what its placements left to deliver (outbox events, emails), how long
    the relays, notifications and the email worker took to deliver it, and the CPU that cost.

    A placement is answered once its order is paid and its events are in the outbox; delivering them
    is work the platform does after. At the rate a placement phase reaches, that work need not keep
    up, and what it leaves behind is neither in the phase's CPU per request nor in its rate."""
    phase.pending_at_end = {series: value for series, value in backlog(stack).items() if value}
    postgres = PostgresBackends(marker) if marker is not None else None
    with Sampler(processes, postgres=postgres) as sampler:
        waited, phase.undelivered = settle(stack, interval=0.1)
    phase.delivered_seconds = None if phase.undelivered else waited
    seconds, cores = sampler.cores(sampler.samples[0][0], sampler.samples[-1][0])
    phase.delivery_cpu_seconds = {
        name: value * seconds for name, value in cores.items() if name != "stolen by the hypervisor"
    }
    return phase


def workers_replaced(seen: dict[str, set[int]], *, workers: int, orders_workers: int) -> dict[str, int]:
    """Per server, how many more worker pids were seen during a phase than it runs workers at once."""
    running = {name: orders_workers if name == "orders" else workers for name in ("bare", "floor", *SERVICES)}
    return {name: max(0, len(seen.get(name, ())) - count) for name, count in running.items()}


# --- one database ----------------------------------------------------------------------------------


def measured_processes(stack: Stack, bare: BareServer, floor: LiveService) -> list[ProcessGroup]:
    processes = [
        ProcessGroup("bare", bare.process.pid, forks_workers=True),
        ProcessGroup("floor", floor.process.pid, forks_workers=True),
    ]
    processes += [ProcessGroup(name, stack[name].process.pid, forks_workers=True) for name in SERVICES]
    processes += [
        ProcessGroup(
            f"{name} {'email worker' if relay.command == 'email_deliver' else 'relay'}", relay.process.pid, False
        )
        for name, relay in stack.relays.items()
    ]
    return processes


def database_run(database: str, args) -> dict:
    database_url = args.database_url if database == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="ratios-") as folder:
        workdir = Path(folder)
        databases = Databases(workdir, database_url)
        logger.info("starting the services (%s) and the bare view", database)
        sizing = {"WEB_CONCURRENCY": str(args.workers), "GUNICORN_THREADS": str(args.threads), **WORKERS_KEPT}
        sink = TraceSink() if args.export_traces else None
        sampling = trace_sampling(args.trace_ratio) if sink is not None else None
        if sink is not None:
            sizing |= sink.environment(sampling)
        stack_run = stack_start(workdir, databases, SERVICES, env={"all": sizing})
        bare = floor = None
        try:
            stack = next(stack_run)
            env = stack["orders"].env
            bare = BareServer(workdir=workdir, workers=env["WEB_CONCURRENCY"], threads=env["GUNICORN_THREADS"]).start()
            floor = floor_server(stack, workdir)
            marker = databases.suffix if database_url else None
            workers = int(env["WEB_CONCURRENCY"])

            def measure(phase: Phase) -> Phase:
                phase.settle_seconds, phase.unsettled = settle(stack)
                if phase.unsettled:
                    logger.warning(
                        "round %d, phase %s starts with %s still pending", phase.round, phase.name, phase.unsettled
                    )
                processes = measured_processes(stack, bare, floor)
                phase_run(
                    phase,
                    stack=stack,
                    bare=bare,
                    floor=floor,
                    processes=processes,
                    marker=marker,
                    args=args,
                    workdir=workdir,
                )
                if phase.target == "order_create":
                    delivery_run(phase, stack=stack, processes=processes, marker=marker)
                return phase

            # Each round measures the ceiling right before the request it is the ceiling for, so a
            # machine that gets busier or quieter during the run moves both sides of a ratio.
            phases = []
            for number in range(1, args.rounds + 1):
                phases += [
                    # The floor next to the bare view, and the read next to it: P1 and the platform's
                    # share of it are each taken between two phases run back to back.
                    measure(Phase("floor-read", "floor", args.read_vus, workers, number)),
                    measure(Phase("bare-read", "bare", args.read_vus, workers, number)),
                    measure(Phase("order-read", "order_read", args.read_vus, workers, number)),
                    measure(Phase("bare-create", "bare", args.create_vus, workers, number)),
                    measure(Phase("order-create", "order_create", args.create_vus, workers, number)),
                ]
            if not args.no_scaling:
                # P4: the same read against orders with one worker (threads unchanged).
                orders = stack["orders"]
                orders.stop()
                orders.env = {**orders.env, "WEB_CONCURRENCY": "1"}
                orders.start()
                phases += [
                    measure(Phase("order-read-1-worker", "order_read", args.read_vus, 1, number))
                    for number in range(1, args.rounds + 1)
                ]
            logs = {name: log_warnings(stack[name].log_text()) for name in SERVICES}
        finally:
            for server in (floor, bare):
                if server is not None:
                    server.stop()
            stack_run.close()
            databases.drop_all()
            if sink is not None:
                sink.stop()  # after the services: each exports what it still holds as it stops
    return {
        "database": database,
        "phases": [asdict(phase) for phase in phases],
        "log_warnings": logs,
        "machine_cores": os.cpu_count(),
        # None: no exporter, spans made and dropped; a count: the spans exported to the TraceSink,
        # sampled as `trace_sampling` says ({}: every trace).
        "spans_exported": None if sink is None else sink.spans,
        "trace_sampling": sampling,
    }


def log_warnings(text: str) -> dict[str, int]:
    """JSON log lines at warning or above, counted by message."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in {"warning", "error", "critical"}:
                message = str(entry.get("message", ""))[:120]
                found[message] = found.get(message, 0) + 1
    return found


# --- the goals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    goal: str
    value: str
    held: bool


def rounds_of(result: dict, name: str) -> dict[int, dict]:
    """The phases called `name`, by round (a result recorded before rounds existed is round 1)."""
    return {phase.get("round", 1): phase for phase in result["phases"] if phase["name"] == name}


def round_ratios(result: dict, name: str, ceiling: str) -> list[float]:
    """Round by round, the rate of phase `name` over that of the `ceiling` phase measured just before it."""
    served, bare = rounds_of(result, name), rounds_of(result, ceiling)
    return [
        served[number]["rate"] / bare[number]["rate"] if bare[number]["rate"] else 0.0
        for number in sorted(served)
        if number in bare
    ]


def described(values: list[float], digits: int = 3) -> str:
    """The median of the rounds' values (ratios unless told), with each round's beside it when there
    is more than one."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    each = ", ".join(f"{value:.{digits}f}" for value in values)
    return f"{median:.{digits}f} (median of {len(values)} rounds: {each})"


def failures(phases: dict[int, dict]) -> tuple[int, int]:
    """Errors and failed checks over every round of a phase."""
    return sum(phase["errors"] for phase in phases.values()), sum(phase["checks_failed"] for phase in phases.values())


def median_rate(phases: dict[int, dict]) -> float:
    return statistics.median(phase["rate"] for phase in phases.values())


def cores_used(phases: dict[int, dict]) -> float:
    """The median over the rounds of the cores the whole machine used during a phase."""
    return statistics.median(phase["cores"]["whole machine"] for phase in phases.values())


def verdicts(result: dict) -> list[Verdict]:
    """The goals, each judged on the median of the rounds: one round's ratio is one sample of a noisy
    machine, the median of several is the measurement. Errors count in every round."""
    read, create = rounds_of(result, "order-read"), rounds_of(result, "order-create")
    p1 = round_ratios(result, "order-read", "bare-read")
    p2 = round_ratios(result, "order-create", "bare-create")
    read_errors, read_checks = failures(read)
    create_errors, create_checks = failures(create)
    create_p99 = max(phase["p99_ms"] for phase in create.values())
    found = [
        Verdict(
            "P1 token-verified read",
            f"{described(p1)}; {median_rate(read):.0f} / {median_rate(rounds_of(result, 'bare-read')):.0f} req/s, "
            f"{read_errors} errors",
            statistics.median(p1) >= P1_RATIO and read_errors == 0 and read_checks == 0,
        ),
        Verdict(
            "P2 order placement",
            f"{described(p2)}; {median_rate(create):.1f} / {median_rate(rounds_of(result, 'bare-create')):.0f} "
            f"req/s, {create_errors} errors, p99 {create_p99:.0f} ms (the worst round)",
            statistics.median(p2) >= P2_RATIO and create_errors == 0 and create_checks == 0 and create_p99 < P2_P99_MS,
        ),
    ]
    services_rss = {
        name: max(phase["peak_worker_rss_mib"].get(name, 0.0) for phase in result["phases"]) for name in SERVICES
    }
    largest = max(services_rss, key=services_rss.get)
    found.append(
        Verdict(
            "P4 worker memory",
            f"largest worker {services_rss[largest]:.0f} MiB ({largest})",
            services_rss[largest] < P4_WORKER_RSS_MIB,
        )
    )
    one = rounds_of(result, "order-read-1-worker")
    if one:
        two_rate, one_rate = median_rate(read), median_rate(one)
        scaling = two_rate / one_rate if one_rate else 0.0
        # What the machine left for a second worker: its cores over those the 1-worker read already
        # used, k6 and the database included, at that phase's CPU per request. Where both share the
        # machine, a cheaper service leaves them a larger share and lowers this bound. Results recorded
        # before `machine_cores` existed say nothing of it.
        cores, used = result.get("machine_cores"), cores_used(one)
        within = (
            f"; the 1-worker read used {used:.2f} of the machine's {cores} cores: at its CPU per request, "
            f"2 workers could serve at most {cores / used:.2f}x here"
            if cores and used
            else ""
        )
        found.append(
            Verdict(
                "P4 1 to 2 workers",
                f"{scaling:.2f}x ({one_rate:.0f} -> {two_rate:.0f} req/s, medians of the rounds{within})",
                scaling >= P4_SCALING and failures(one) == (0, 0),
            )
        )
    return found


def read_taken_apart(result: dict) -> tuple[list[float], list[float]] | None:
    """Round by round, the floor over the bare view (the platform's request handling) and the order
    read over the floor (the order's own work); None for a result recorded without the floor."""
    if not rounds_of(result, "floor-read"):
        return None
    return round_ratios(result, "floor-read", "bare-read"), round_ratios(result, "order-read", "floor-read")


@dataclass(frozen=True)
class Delivered:
    """One placement phase with the delivery after it counted (`delivery_run`)."""

    left: float  # outbox events and emails still to deliver when the phase ended
    seconds: float | None  # after the phase, until all of it was delivered; None: not within SETTLE_SECONDS
    rate: float  # placements a second over the phase and those seconds (0 when never delivered)
    ratio: float  # `rate` over the bare view's, measured just before the phase (P2's ceiling)
    cpu_ms_during: float  # the whole machine's CPU per placement during the phase's steady load
    cpu_ms_with_delivery: float  # the same, plus what the delivery after the phase used per placement


def placements_delivered(result: dict) -> list[Delivered] | None:
    """Round by round, each placement phase with the delivery after it counted; None for a result
    recorded before `delivery_run` existed."""
    placed, bare = rounds_of(result, "order-create"), rounds_of(result, "bare-create")
    if not placed or any("delivered_seconds" not in phase for phase in placed.values()):
        return None
    found = []
    for number in sorted(placed):
        phase = placed[number]
        seconds = phase["delivered_seconds"]
        rate = phase["count"] / (phase["seconds"] + seconds) if seconds is not None else 0.0
        ceiling = bare[number]["rate"] if number in bare else 0.0
        during = phase["cpu_ms_per_request"].get("whole machine", 0.0)
        delivering = phase["delivery_cpu_seconds"].get("whole machine", 0.0)
        after = delivering * 1000 / phase["count"] if phase["count"] else 0.0
        found.append(
            Delivered(
                left=sum(phase["pending_at_end"].values()),
                seconds=seconds,
                rate=rate,
                ratio=rate / ceiling if ceiling else 0.0,
                cpu_ms_during=during,
                cpu_ms_with_delivery=during + after,
            )
        )
    return found


def delivered_cells(found: list[Delivered] | None) -> list[str]:
    """The cells of "The placement, delivered" for one database, each the median of the rounds."""
    if found is None:
        return ["—"] * 5
    never = [index + 1 for index, delivered in enumerate(found) if delivered.seconds is None]
    if never:
        late = f"not all delivered within {SETTLE_SECONDS:.0f} s in round " + ", ".join(map(str, never))
        return [described([delivered.left for delivered in found], 0), late, late, late, late]
    return [
        described([delivered.left for delivered in found], 0),
        described([delivered.seconds for delivered in found], 1),
        described([delivered.rate for delivered in found], 1),
        described([delivered.ratio for delivered in found]),
        f"{statistics.median(delivered.cpu_ms_during for delivered in found):.2f} during the phase, "
        f"{statistics.median(delivered.cpu_ms_with_delivery for delivered in found):.2f} with the delivery after it",
    ]


# --- the report ------------------------------------------------------------------------------------

GOALS = {
    "P1 token-verified read": f">= {P1_RATIO:.2f} of the bare view, 0 errors",
    "P2 order placement": f">= {P2_RATIO:.2f} of the bare view, 0 errors, p99 < {P2_P99_MS:.0f} ms",
    "P4 worker memory": f"every service's worker < {P4_WORKER_RSS_MIB} MiB",
    "P4 1 to 2 workers": f">= {P4_SCALING}x",
}
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Rows of the CPU table, in the order a request travels.
CPU_ROWS = (
    "bare",
    "floor",
    "orders",
    "payments",
    "auth",
    "notifications",
    "orders relay",
    "payments relay",
    "notifications email worker",
    "postgres",
    "k6",
    "rest of the machine",
    "whole machine",
)


def report(results: list[dict], *, machine: dict[str, str], command: str, load_before: str, args) -> str:
    lines = [
        f"# Side by side: the services against a bare Django view, {args.date}",
        "",
        f"Recorded with `{command}` at commit `{git_commit()}`. Load average before the run "
        f"(1, 5, 15 min): {load_before}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "Everything ran on this one machine: k6, the bare view, the four services, their relays and the email "
        'worker, and the database. "rest of the machine" below is the CPU that other processes used meanwhile.',
        "",
        "## Goals",
        "",
        "| goal | target | " + " | ".join(NAMES[result["database"]] for result in results) + " |",
        "|---|---|" + "---|" * len(results),
    ]
    by_database = [{verdict.goal: verdict for verdict in verdicts(result)} for result in results]
    for goal, target in GOALS.items():
        cells = []
        for found in by_database:
            verdict = found.get(goal)
            cells.append("—" if verdict is None else f"{verdict.value}: {'held' if verdict.held else '**missed**'}")
        lines.append(f"| {goal} | {target} | " + " | ".join(cells) + " |")
    apart = [read_taken_apart(result) for result in results]
    if any(ratios is not None for ratios in apart):
        rows = (
            "the platform's request handling: the floor (an empty token-verified read, perf/floor) over the bare view",
            "the order's own work: the order read over the floor",
        )
        lines += [
            "",
            "## The read, taken apart",
            "",
            "P1 is the product of two ratios, each taken within a round like P1's own:",
            "",
            "| ratio | " + " | ".join(NAMES[result["database"]] for result in results) + " |",
            "|---|" + "---|" * len(results),
        ]
        for index, row in enumerate(rows):
            cells = ["—" if ratios is None else described(ratios[index]) for ratios in apart]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    delivered = [placements_delivered(result) for result in results]
    if any(found is not None for found in delivered):
        rows = (
            "left to deliver when the phase ended (outbox events and emails)",
            "seconds after the phase until all of it was delivered",
            "placements a second, the delivery included: those placed over the phase's seconds plus those after it",
            "that over the bare view (P2's ratio, the delivery counted)",
            "the whole machine's CPU per placement, ms",
        )
        cells = [delivered_cells(found) for found in delivered]
        lines += [
            "",
            "## The placement, delivered",
            "",
            "P2 counts a placement when it is answered: the order paid, its events in the outbox. The relays, "
            "notifications and the email worker deliver those events and send the emails after it, and at the "
            "rate of a placement phase they need not keep up. After each placement phase the run waits until "
            "they have delivered everything, and measures how long that took and what CPU it used "
            "(medians of the rounds):",
            "",
            "| | " + " | ".join(NAMES[result["database"]] for result in results) + " |",
            "|---|" + "---|" * len(results),
            *(
                f"| {row} | " + " | ".join(database[index] for database in cells) + " |"
                for index, row in enumerate(rows)
            ),
        ]
    lines += [
        "",
        "## Configuration",
        "",
        f"- {args.rounds} rounds of floor-read, bare-read, order-read, bare-create, order-create"
        + ("" if args.no_scaling else f" (then {args.rounds} of the 1-worker read)")
        + ": each ratio is taken within a round, and the goals are judged on the median of the rounds.",
        f"- Each phase: k6 `perf/k6/ratios.js`, closed loop (`constant-vus`), {args.phase_seconds} s; reads at "
        f"{args.read_vus} virtual users, placements at {args.create_vus} ({args.users} users logged in during setup).",
        f"- Services and the bare view: `platform/gunicorn.conf.py`, {args.workers} workers x {args.threads} "
        "threads each, workers kept for the whole run (`GUNICORN_MAX_REQUESTS=0`), DEBUG off, JSON "
        "logs to a file; outbox relays and the email worker running (poll interval 0.1 s).",
        '- The bare view: perf/bare, `GET /bare/` answering `{"status": "ok", "service": "bare"}`; '
        "no middleware, no database.",
        "- The floor: perf/floor, `GET /floor/` with a valid access token, served with orders' environment and "
        "settings (its middleware, URLconf and token check) but a view that reads nothing.",
        (
            "- P4 scaling: not measured (`--no-scaling`)."
            if args.no_scaling
            else f"- P4 scaling: orders restarted with 1 worker ({args.threads} threads), the token-verified read "
            "again."
        ),
        "- Traces: " + traces_described(results),
        "",
    ]
    for result in results:
        lines += database_section(result)
    return "\n".join(lines)


def traces_described(results: list[dict]) -> str:
    if all(result.get("spans_exported") is None for result in results):
        return (
            "no exporter (`--export-traces` not given): every request's span is made and dropped; production's "
            "pods export the traces they sample, and each span's encoding costs a worker more CPU."
        )
    counts = ", ".join(f"{NAMES[result['database']]} {result.get('spans_exported') or 0:,}" for result in results)
    received = f"to an endpoint in the benchmark's process that counts and discards them; spans received: {counts}."
    sampling = next((result["trace_sampling"] for result in results if result.get("trace_sampling") is not None), None)
    if sampling is None:  # recorded before runs sampled as production does: every span
        return f"every span exported over OTLP/HTTP (`--export-traces`), {received}"
    if sampling:
        settings = ", ".join(f"`{key}={value}`" for key, value in sampling.items())
    else:
        settings = "every trace recorded (OpenTelemetry's default sampler)"
    whose = "production's sampling" if sampling == production_sampling() else "not production's (`--trace-ratio`)"
    return f"spans exported over OTLP/HTTP (`--export-traces`), sampled with {settings}: {whose}; {received}"


def merged_phases(phases: list[dict]) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """Per phase name, in the order first run: CPU ms per request and cores used, each the mean of the
    rounds."""
    named: dict[str, list[dict]] = {}
    for phase in phases:
        named.setdefault(phase["name"], []).append(phase)

    def mean(rounds: list[dict], key: str) -> dict[str, float]:
        names = {name for phase in rounds for name in phase[key]}
        return {name: statistics.fmean(phase[key].get(name, 0.0) for phase in rounds) for name in names}

    return {name: (mean(rounds, "cpu_ms_per_request"), mean(rounds, "cores")) for name, rounds in named.items()}


def settled_described(phases: list[dict]) -> str:
    """How long the phases waited for the backlog earlier placements left, and any that started with some."""
    if not any("settle_seconds" in phase for phase in phases):
        return "Backlog before each phase: not recorded."
    longest = max(phases, key=lambda phase: phase.get("settle_seconds", 0.0))
    unsettled = [
        f"round {phase.get('round', 1)} {phase['name']} with "
        + ", ".join(f"{value:.0f} {series}" for series, value in phase["unsettled"].items())
        for phase in phases
        if phase.get("unsettled")
    ]
    return (
        "Backlog before each phase (outbox events and emails still to deliver, from each service's /metrics): "
        f"waited for at most {longest.get('settle_seconds', 0.0):.1f} s (before round {longest.get('round', 1)} "
        f"{longest['name']}); "
        + (
            f"phases started with some left after {SETTLE_SECONDS:.0f} s: " + "; ".join(unsettled)
            if unsettled
            else "every phase started with none"
        )
        + "."
    )


def database_section(result: dict) -> list[str]:
    phases = result["phases"]
    lines = [
        f"## {NAMES[result['database']]}",
        "",
        "| round | phase | request | VUs | orders workers | req/s | median | p95 | p99 | max | errors | "
        "failed checks |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in phases:
        lines.append(
            f"| {phase.get('round', 1)} | {phase['name']} | {phase['target']} | {phase['vus']} | "
            f"{phase['orders_workers']} | "
            f"{phase['rate']:.1f} | {phase['median_ms']:.1f} | {phase['p95_ms']:.1f} | {phase['p99_ms']:.1f} | "
            f"{phase['max_ms']:.1f} | {phase['errors']} | {phase['checks_failed']} |"
        )
    merged = merged_phases(phases)
    lines += [
        "",
        "CPU milliseconds per request of each process during the phase's steady load (cores used x 1000 / req/s; "
        "the mean of the rounds):",
        "",
        "| process | " + " | ".join(merged) + " |",
        "|---|" + "---:|" * len(merged),
    ]
    for row in CPU_ROWS:
        if not any(row in cpu for cpu, _ in merged.values()):
            continue
        cells = [f"{cpu.get(row, 0.0):.2f}" for cpu, _ in merged.values()]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cores used on average (the machine has "
        f"{os.cpu_count()}; the mean of the rounds): "
        + "; ".join(
            f"{name} {cores.get('whole machine', 0.0):.2f} in all, "
            f"{cores.get('rest of the machine', 0.0):.2f} by other processes"
            for name, (_, cores) in merged.items()
        )
        + ".",
        "",
        settled_described(phases),
        "",
        "Workers replaced by gunicorn during a phase: "
        + (
            "; ".join(
                f"round {phase.get('round', 1)} {phase['name']}: "
                + ", ".join(f"{name} {count}" for name, count in phase.get("workers_replaced", {}).items() if count)
                for phase in phases
                if any(phase.get("workers_replaced", {}).values())
            )
            or "none"
        )
        + ".",
        "",
        "Peak resident memory of one worker, MiB: "
        + ", ".join(
            f"{name} {max(phase['peak_worker_rss_mib'].get(name, 0.0) for phase in phases):.0f}"
            for name in ("bare", "floor", *SERVICES)
            if any(name in phase["peak_worker_rss_mib"] for phase in phases)
        )
        + ".",
        "",
        "Warnings and errors in the services' logs: "
        + (
            "; ".join(
                f"{name}: " + ", ".join(f"{count} x `{message}`" for message, count in messages.items())
                for name, messages in result["log_warnings"].items()
                if messages
            )
            or "none"
        )
        + ".",
        "",
    ]
    return lines


def run(args) -> int:
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    machine = machine_description("postgres" if "postgres" in databases else "sqlite", args.database_url)
    if "postgres" in databases and "sqlite" in databases:
        import sqlite3  # noqa: PLC0415

        machine["SQLite"] = sqlite3.sqlite_version
    results = [database_run(database, args) for database in databases]
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.date}-ratios" + (f"-{args.tag}" if args.tag else "")
    command = " ".join([".venv/bin/python perf/bench.py", shlex.join(args.argv)]).strip()
    (results_dir / f"{stem}.md").write_text(
        report(results, machine=machine, command=command, load_before=load_before, args=args)
    )
    (results_dir / f"{stem}.json").write_text(
        json.dumps(
            {"machine": machine, "load_before": load_before, "commit": git_commit(), "results": results},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    sys.stdout.write(f"{results_dir / f'{stem}.md'}\n")
    held = all(verdict.held for result in results for verdict in verdicts(result))
    return 0 if held else 1
