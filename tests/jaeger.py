"""Jaeger on 127.0.0.1, built from its Go module (platform/tools/jaeger) and run with the platform's
config (platform/jaeger/config.yaml): the trace backend the end-to-end trace test exports to and
queries, through the same API as Jaeger's UI."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests

from tests.live import REPO, free_port

CONFIG = REPO / "platform" / "jaeger" / "config.yaml"


def jaeger_binary() -> str:
    """The built Jaeger, building it first on a machine that lacks it (minutes, once)."""
    built = subprocess.run(
        [
            str(REPO / "platform" / "tools" / "go-tool.sh"),
            str(REPO / "platform" / "tools" / "jaeger"),
            "github.com/jaegertracing/jaeger/cmd/jaeger",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return built.stdout.strip()


class Jaeger:
    """One Jaeger with its OTLP/HTTP receiver and query API on free loopback ports."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.otlp_port, self.query_port, grpc_port = free_port(), free_port(), free_port()
        self.otlp_endpoint = f"http://127.0.0.1:{self.otlp_port}"
        self.url = f"http://127.0.0.1:{self.query_port}"
        self.env = {
            "JAEGER_OTLP_HTTP_ADDRESS": f"127.0.0.1:{self.otlp_port}",
            "JAEGER_QUERY_ADDRESS": f"127.0.0.1:{self.query_port}",
            "JAEGER_QUERY_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
        }
        self.log = workdir / "jaeger.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Jaeger:
        binary = jaeger_binary()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--config", f"file:{CONFIG}"],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/api/services", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"Jaeger not ready in 60 s:\n{self.log.read_text()}"
            time.sleep(0.2)
        # The receiver is up once it answers (an empty export is a valid one).
        while True:
            try:
                receiver = requests.post(
                    f"{self.otlp_endpoint}/v1/traces", json={}, headers={"Content-Type": "application/json"}, timeout=1
                )
                if receiver.status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"Jaeger's OTLP receiver not up in 60 s:\n{self.log.read_text()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def trace(self, trace_id: str) -> dict | None:
        """The trace as Jaeger's API gives it ({"spans": [...], "processes": {...}}), or None."""
        response = requests.get(f"{self.url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data[0] if data else None
