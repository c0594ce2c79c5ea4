"""Jaeger on 127.0.0.1, built from its Go module (platform/tools/jaeger) and run with the platform's
config (platform/jaeger/config.yaml): the trace backend the end-to-end trace test exports to and
queries, through the same API as Jaeger's UI; and what a trace from that API holds (Trace), for those
tests and the cluster's, which read the cluster's Jaeger."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import requests

from tests.journey import LINES
from tests.live import REPO, LoggedProcess, free_port

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


class Jaeger(LoggedProcess):
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
        self.log_path: Path = workdir / "jaeger.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Jaeger:
        binary = jaeger_binary()
        self.spawn([binary, "--config", f"file:{CONFIG}"], env={**os.environ, **self.env}, log_path=self.log_path)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/api/services", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, self.log_text()
            assert time.monotonic() < deadline, f"Jaeger not ready in 60 s:\n{self.log_text()}"
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
            assert time.monotonic() < deadline, f"Jaeger's OTLP receiver not up in 60 s:\n{self.log_text()}"
            time.sleep(0.2)

    def trace(self, trace_id: str) -> dict | None:
        """The trace as Jaeger's API gives it ({"spans": [...], "processes": {...}}), or None."""
        response = requests.get(f"{self.url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data[0] if data else None


def traceparent() -> tuple[str, str, str]:
    """A client's own trace context: (trace id, span id, the header)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def order_place_traced(orders_url: str, access_token: str, *, http=requests) -> tuple[str, str, requests.Response]:
    """An order placed with a client's own `traceparent` (through `http`: requests, or a Session
    that adds a Host header): (its trace id, the client's span id, orders' answer)."""
    trace_id, client_span_id, header = traceparent()
    placed = http.post(
        f"{orders_url}/api/orders/",
        json={"currency": "EUR", "lines": LINES, "payment_method": "pm_card_visa"},
        headers={
            "Authorization": f"Bearer {access_token}",
            "Idempotency-Key": str(uuid.uuid4()),
            "traceparent": header,
        },
        timeout=30,
    )
    return trace_id, client_span_id, placed


class Trace:
    """A trace from Jaeger's API: its spans, each with its service, component, kind and parent."""

    def __init__(self, data: dict):
        processes = {
            key: {"service": process["serviceName"], **{tag["key"]: tag["value"] for tag in process["tags"]}}
            for key, process in data["processes"].items()
        }
        self.spans = []
        for span in data["spans"]:
            tags = {tag["key"]: tag["value"] for tag in span["tags"]}
            parents = [ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"]
            self.spans.append(
                {
                    "id": span["spanID"],
                    "trace_id": span["traceID"],
                    "name": span["operationName"],
                    "parent": parents[0] if parents else None,
                    "kind": tags.get("span.kind", "internal"),
                    "tags": tags,
                    **processes[span["processID"]],
                }
            )
        self.by_id = {span["id"]: span for span in self.spans}

    def services(self) -> set[str]:
        return {span["service"] for span in self.spans}

    def find(self, **wanted) -> dict:
        found = [span for span in self.spans if wanted.items() <= span.items()]
        assert len(found) == 1, (wanted, [(span["service"], span["name"], span["kind"]) for span in self.spans])
        return found[0]

    def roots(self) -> list[dict]:
        """The spans whose parent is not in the trace: one, the first service's, once all have come."""
        return [span for span in self.spans if span["parent"] not in self.by_id]

    def ancestors(self, span: dict) -> list[dict]:
        chain = []
        while span["parent"] in self.by_id:
            span = self.by_id[span["parent"]]
            chain.append(span)
        return chain


def notified(trace: Trace, event_type: str) -> bool:
    """The trace holds notifications' handling of the relay's delivery of `event_type`."""
    sends = [span for span in trace.spans if span["name"] == f"send {event_type}"]
    return any(
        span["service"] == "notifications" and span["kind"] == "server" and sends[0] in trace.ancestors(span)
        for span in trace.spans
        if sends
    )


def order_traced(trace: Trace | None) -> bool:
    """The trace of a paid order holds all three services' spans, notifications' filing of the
    relay's delivery included, and is one tree. Each process sends its spans in batches of its own
    (every 5 s by default), so they reach the backend in any order: the orders relay's may come before
    the orders request's own span, which ends last. A test waits for this, not for the last hop."""
    return (
        trace is not None
        and {"orders", "payments", "notifications"} <= trace.services()
        and notified(trace, "order.paid")
        and len(trace.roots()) == 1
    )
