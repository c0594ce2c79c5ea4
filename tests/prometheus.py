"""Debian's Prometheus on 127.0.0.1 (`make test` installs it), scraping a running stack with the
repository's rules: what the end-to-end observability test and perf/dashboards.py query."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import requests
import yaml

from tests.live import REPO, LoggedProcess, Stack, free_port

RULES = REPO / "platform" / "prometheus" / "rules"
# A missing binary fails what needs it, never skips it.
PROMETHEUS = shutil.which("prometheus") or "prometheus"


class Prometheus(LoggedProcess):
    """Prometheus scraping the stack's services (job `services`) and their relays and email worker
    (job `workers`, with `component`) every `interval`, and evaluating the rules as often."""

    def __init__(self, workdir: Path, stack: Stack, *, interval: str = "1s"):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The labels the cluster's scrape takes from the pod: the service, its color and version.
        services = [
            {
                "targets": [f"127.0.0.1:{service.port}"],
                "labels": {
                    "service": name,
                    "color": service.env["DEPLOY_COLOR"],
                    "version": service.env["APP_VERSION"],
                },
            }
            for name, service in stack.services.items()
        ]
        workers = [
            {
                "targets": [relay.metrics_url.removeprefix("http://").removesuffix("/metrics")],
                "labels": {"service": relay.service.name, "component": relay.command.replace("_", "-")},
            }
            for relay in stack.relays.values()
        ]
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
            "scrape_configs": [
                {"job_name": "services", "static_configs": services},
                {"job_name": "workers", "static_configs": workers},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path: Path = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        self.spawn(
            [
                PROMETHEUS,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            env=dict(os.environ),
            log_path=self.log_path,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, self.log_text()
            assert time.monotonic() < deadline, f"Prometheus not ready in 30 s:\n{self.log_text()}"
            time.sleep(0.2)

    def api(self, path: str, **params) -> dict | list:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert (response.status_code, body["status"]) == (200, "success"), body
        return body["data"]

    def query(self, expression: str) -> list[dict]:
        return self.api("query", query=expression)["result"]

    def wait_for(self, expression: str, *, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not (result := self.query(expression)):
            assert time.monotonic() < deadline, f"no data for {expression} in {timeout} s"
            time.sleep(0.5)
        return result

    def query_range(self, expression: str, *, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=expression, start=start, end=end, step=step)["result"]


def as_grafana_sends_it(expression: str, *, rate_interval: str) -> str:
    """A panel's query with Grafana's variables filled in: every service, or orders where a panel
    shows one service, and `$__rate_interval` as given."""
    expression = expression.replace('service="$service"', 'service="orders"').replace("$service", ".+")
    return expression.replace("$__rate_interval", rate_interval)
