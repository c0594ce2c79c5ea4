"""k6 at a constant rate through a cluster's stable Services (perf/k6/cluster.js), for as long as the
releases and pod deletions of a test module take, then judged request by request.

k6 is stopped with SIGINT. Requests in flight at that moment are cut by k6 itself: k6 leaves them out
of its metrics, and they are logged after the stop, so every request logged before the stop is
judged and nothing after it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.kube import REPO, SERVICES, Cluster, host_name

K6 = Path(sys.executable).parent / "k6"
SCENARIO = REPO / "perf" / "k6" / "cluster.js"
READS = {"order_detail", "me", "inbox", "payment_detail"}
# The requests k6 sends to each service (perf/k6/cluster.js): what a service's own release can touch
# first. A placement also calls payments and auth behind orders.
REQUESTS_OF = {
    "auth": frozenset({"me", "login"}),
    "orders": frozenset({"order_detail", "order_create"}),
    "payments": frozenset({"payment_detail"}),
    "notifications": frozenset({"inbox"}),
}


@dataclass(frozen=True)
class Request:
    at: float  # when the response ended, seconds since the epoch
    name: str
    status: int
    error_code: int
    duration_ms: float
    request_id: str
    problem_code: str = ""  # the problem+json `code` of a failed response, when it had one

    @property
    def failed(self) -> bool:
        return self.error_code != 0 or not 200 <= self.status < 400


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile, as k6 reports it closely enough for a window of a few hundred."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class LoadResult:
    requests: list[Request]
    summary: dict
    exit_code: int
    stopped_at: float

    @property
    def failed(self) -> list[Request]:
        return [request for request in self.requests if request.failed]

    def k6_failed_count(self) -> int:
        """Failed requests by k6's own metric (setup included, requests cut by the stop excluded)."""
        return int(self.summary["metrics"]["http_req_failed"]["values"]["passes"])

    def between(self, start: float, end: float, *, names: frozenset[str] | None = None) -> list[Request]:
        """The requests that ended from `start` to `end`; only those called one of `names`, if given."""
        return [
            request
            for request in self.requests
            if start <= request.at <= end and (names is None or request.name in names)
        ]

    def window(self, start: float, end: float, *, names: frozenset[str] | None = None) -> dict:
        inside = self.between(start, end, names=names)
        durations = [request.duration_ms for request in inside]
        return {
            "requests": len(inside),
            "failed": sum(request.failed for request in inside),
            "p95_ms": percentile(durations, 0.95),
            "max_ms": max(durations) if durations else None,
        }


@dataclass
class Load:
    cluster: Cluster
    workdir: Path
    rate: int = 6  # iterations per `time_unit_seconds`
    time_unit_seconds: int = 1
    mode: str = "mixed"  # perf/k6/cluster.js's MODE: mixed, logins or orders
    users: int = 4
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    result: LoadResult | None = field(default=None)

    @property
    def console(self) -> Path:
        return self.workdir / "requests.log"

    @property
    def summary_file(self) -> Path:
        return self.workdir / "summary.json"

    def start(self, *, setup_timeout: float = 180) -> None:
        addresses = {host_name(service): self.cluster.cluster_ip(service) for service in SERVICES}
        environment = {
            **os.environ,
            "HOSTS": json.dumps(addresses),
            **{f"{service.upper()}_URL": f"http://{host_name(service)}" for service in SERVICES},
            "MODE": self.mode,
            "RATE": str(self.rate),
            "TIME_UNIT_SECONDS": str(self.time_unit_seconds),
            "USERS": str(self.users),
            "SUMMARY_FILE": str(self.summary_file),
        }
        command = [
            str(K6),
            "run",
            "--no-usage-report",
            "--quiet",
            "--log-format=json",
            f"--console-output={self.console}",
            str(SCENARIO),
        ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=(self.workdir / "k6.stdout").open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + setup_timeout
        # The load has begun at the first request of an iteration (setup() logs only the mixed mode's
        # orders, and no read).
        first = {"mixed": READS, "logins": {"login"}, "orders": {"order_create"}}[self.mode]
        while not any(request.name in first for request in self.requests()):
            if self.process.poll() is not None:
                raise AssertionError(f"k6 exited {self.process.returncode}: {(self.workdir / 'k6.stdout').read_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"k6's setup did not finish within {setup_timeout:.0f} s")
            time.sleep(1)
        self.started_at = time.time()

    def requests(self) -> list[Request]:
        if not self.console.exists():
            return []
        found = []
        for line in self.console.read_text().splitlines():
            try:
                entry = json.loads(json.loads(line)["msg"])
            except (ValueError, KeyError, TypeError):
                continue  # a line of k6's own, or one cut while being written
            found.append(
                Request(
                    at=entry["t"] / 1000,
                    name=entry["n"],
                    status=entry["s"],
                    error_code=entry["e"],
                    duration_ms=entry["d"],
                    request_id=entry["v"],
                    problem_code=entry.get("c", ""),
                )
            )
        return found

    def stop(self, *, timeout: float = 60) -> LoadResult:
        if self.result is not None:
            return self.result
        assert self.process is not None, "k6 was never started"
        stopped_at = time.time()
        self.process.send_signal(signal.SIGINT)
        try:
            exit_code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        summary = json.loads(self.summary_file.read_text()) if self.summary_file.exists() else {}
        # A request is judged when its answer was in before the stop; those in flight are cut by k6
        # (status 0, error 1000) and logged after it. k6 stamps whole milliseconds, so a request cut
        # within the millisecond of the stop is stamped before it: the stop is taken to its millisecond.
        cutoff = math.floor(stopped_at * 1000) / 1000
        judged = [request for request in self.requests() if request.at < cutoff]
        self.result = LoadResult(requests=judged, summary=summary, exit_code=exit_code, stopped_at=stopped_at)
        return self.result

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def machine(cluster: Cluster) -> dict:
    """The machine a recorded result ran on, for perf/results."""

    def first(path: str, prefix: str) -> str:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
        return "unknown"

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    k6 = subprocess.run([str(K6), "version"], capture_output=True, text=True, check=False)
    node = cluster.core.list_node().items[0].status.node_info
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": str(Path("/proc/cpuinfo").read_text().count("\nprocessor") + 1),
        "memory": first("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "kubernetes": f"{node.kubelet_version}, {node.container_runtime_version}",
        "k6": k6.stdout.split()[1] if k6.stdout else "unknown",
        "commit": git.stdout.strip(),
    }
