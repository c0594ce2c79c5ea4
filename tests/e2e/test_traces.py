"""Traces as a real backend holds them: the four services, their relays and Jaeger (built from its Go
module), the services exporting over OTLP/HTTP.

What it shows: an order placed with a client's `traceparent` is one trace across orders, auth,
payments and, through orders' outbox and its relay, notifications, and through notifications' email
queue its email worker; a cancellation's refund reaches
notifications through payments' outbox in its own trace; every span's parent is in the trace; every
request's log line carries its trace id; with head sampling as production has it, an order is one
whole trace or none at all, the decision going with it through the outbox; and a trace backend that
is down costs no request.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.client import register_and_login
from tests.e2e.flows import wait_for
from tests.jaeger import Jaeger, Trace, notified, order_place_traced, order_traced, traceparent
from tests.journey import LINES
from tests.live import Databases, Stack, stack_start

pytestmark = pytest.mark.e2e

HEX_TRACE_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory) -> Iterator[Jaeger]:
    backend = Jaeger(tmp_path_factory.mktemp("jaeger")).start()
    try:
        yield backend
    finally:
        backend.stop()


def exporting_stack(jaeger: Jaeger, workdir, **sampling: str) -> Iterator[Stack]:
    """The services, relays and email worker on databases of their own, exporting their spans to
    Jaeger, each batch within 0.1 s (the SDK's default is 5 s), sampled as `sampling` says."""
    databases = Databases(workdir, os.environ.get("DATABASE_URL"))
    exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    starting = stack_start(
        workdir, databases, ("auth", "orders", "payments", "notifications"), {"all": exporting | sampling}
    )
    try:
        yield next(starting)
    finally:
        starting.close()
        databases.drop_all()


def order_post(orders_url: str, access_token: str) -> requests.Response:
    """An order placed with no trace context of the client's: the platform starts its trace."""
    placed = requests.post(
        f"{orders_url}/api/orders/",
        json={"currency": "EUR", "lines": LINES, "payment_method": "pm_card_visa"},
        headers={"Authorization": f"Bearer {access_token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert placed.status_code == 201, placed.text
    return placed


@pytest.fixture(scope="module")
def traced(jaeger, tmp_path_factory) -> Iterator[Stack]:
    """The platform exporting to Jaeger with the SDK's default sampler: every trace recorded."""
    yield from exporting_stack(jaeger, tmp_path_factory.mktemp("traced"))


def trace_wait(jaeger: Jaeger, trace_id: str, complete, *, timeout: float = 30.0) -> Trace:
    """The trace once `complete(trace)` holds (spans arrive in batches, from several processes)."""
    deadline = time.monotonic() + timeout
    while True:
        data = jaeger.trace(trace_id)
        if data is not None and complete(trace := Trace(data)):
            return trace
        assert time.monotonic() < deadline, f"trace {trace_id} incomplete after {timeout} s: {data}"
        time.sleep(0.3)


def delivered_wait(stack: Stack, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while stack.events_undelivered():
        assert time.monotonic() < deadline, "events still undelivered"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def order_traces(traced, jaeger) -> dict:
    """One order placed and then cancelled, each request with a traceparent of the client's."""
    urls = {name: service.url for name, service in traced.services.items()}
    _, tokens = register_and_login(urls["auth"])
    authorization = {"Authorization": f"Bearer {tokens['access_token']}"}
    place_trace, place_parent, placed = order_place_traced(urls["orders"], tokens["access_token"])
    assert placed.status_code == 201, placed.text
    delivered_wait(traced)
    cancel_trace, cancel_parent, header = traceparent()
    cancelled = requests.post(
        f"{urls['orders']}/api/orders/{placed.json()['id']}/cancel/",
        headers={**authorization, "traceparent": header},
        timeout=30,
    )
    assert cancelled.status_code == 200, cancelled.text
    delivered_wait(traced)
    return {
        "place": (place_trace, place_parent, placed.headers["X-Request-ID"]),
        "cancel": (cancel_trace, cancel_parent, cancelled.headers["X-Request-ID"]),
    }


def test_an_order_is_one_trace_across_orders_payments_and_notifications(order_traces, jaeger):
    trace_id, client_span_id, request_id = order_traces["place"]
    trace = trace_wait(
        jaeger,
        trace_id,
        lambda trace: order_traced(trace) and any(span["name"] == "send email" for span in trace.spans),
    )

    assert {"orders", "payments", "notifications"} <= trace.services()
    assert {span["trace_id"] for span in trace.spans} == {trace_id}
    # The one root is orders' answer to the client, continuing the client's own span.
    roots = trace.roots()
    assert [(span["service"], span["name"], span["parent"]) for span in roots] == [
        ("orders", "POST /api/orders/", client_span_id)
    ]
    request = roots[0]
    assert (request["kind"], request["platform.component"]) == ("server", "web")
    assert (request["tags"]["http.response.status_code"], request["tags"]["platform.request_id"]) == (201, request_id)
    # Orders charged through payments: payments' server span under orders' client span.
    charge = trace.find(service="payments", kind="server", name="POST /api/payments/")
    assert trace.by_id[charge["parent"]]["service"] == "orders"
    assert trace.by_id[charge["parent"]]["kind"] == "client"
    assert request in trace.ancestors(charge)
    # The outbox carried the trace: the relay's delivery continues the request that wrote the event,
    # and notifications' handling of it continues the delivery.
    send = trace.find(name="send order.paid")
    assert (send["service"], send["kind"], send["platform.component"]) == ("orders", "producer", "outbox-relay")
    assert send["tags"]["platform.outbox.outcome"] == "delivered"
    assert request in trace.ancestors(send)
    received = trace.find(service="notifications", kind="server", name="POST /api/notifications/events/")
    assert send in trace.ancestors(received)
    assert (received["service.version"], received["platform.color"]) == ("e2e", "blue")
    # The email queued while notifications filed the event is sent by its worker in the same trace.
    email = trace.find(name="send email")
    assert (email["service"], email["kind"], email["platform.component"]) == ("notifications", "client", "email-worker")
    assert email["tags"]["platform.email.outcome"] == "sent"
    assert received in trace.ancestors(email)


def test_a_refund_reaches_notifications_through_payments_outbox_in_the_cancellations_trace(order_traces, jaeger):
    trace_id, client_span_id, _ = order_traces["cancel"]
    trace = trace_wait(
        jaeger,
        trace_id,
        lambda trace: (
            notified(trace, "payment.refunded") and notified(trace, "order.cancelled") and len(trace.roots()) == 1
        ),
    )
    roots = trace.roots()
    assert [(span["service"], span["parent"]) for span in roots] == [("orders", client_span_id)]
    # Spans are named by the route (its Django pattern), not by the path with its ids.
    refund = trace.find(service="payments", kind="server", name="POST /api/payments/<uuid:payment_id>/refund/")
    send = trace.find(name="send payment.refunded")
    assert (send["service"], send["platform.component"]) == ("payments", "outbox-relay")
    assert refund in trace.ancestors(send)


def test_each_worker_traces_as_a_process_of_its_own(order_traces, jaeger, traced):
    """gunicorn loads the application in its arbiter and forks the workers (platform/gunicorn.conf.py):
    each worker installs its own tracer provider, so a web span names the worker that served it,
    never the arbiter, which serves nothing."""
    trace_id, _, _ = order_traces["place"]
    trace = trace_wait(jaeger, trace_id, order_traced)
    web = [span for span in trace.spans if span["platform.component"] == "web"]
    assert {span["service"] for span in web} >= {"orders", "payments", "notifications"}
    for span in web:
        service = traced[span["service"]]
        workers = service.workers()
        host, _, pid = span["service.instance.id"].rpartition("-")
        assert (host, int(pid) in workers) == (socket.gethostname(), True), (span["name"], pid, workers)


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_request_log_line_carries_its_trace_id(order_traces, traced):
    trace_id, _, request_id = order_traces["place"]

    def access_lines() -> dict[str, list[dict]]:
        return {
            name: [line for line in log_lines(service.log_text()) if line["logger"] == "apps.access"]
            for name, service in traced.services.items()
        }

    # Access lines are written a moment after their requests (apps.core.logging.StdoutHandler).
    wait_for(lambda: any(line.get("trace_id") == trace_id for line in access_lines()["notifications"]), timeout=10)
    access = access_lines()
    assert all(access.values()), {name: len(lines) for name, lines in access.items()}
    assert [
        (name, line["message"])
        for name, lines in access.items()
        for line in lines
        if not HEX_TRACE_ID.fullmatch(line.get("trace_id", ""))
    ] == []
    # The client's trace id is on orders' line for the request, on payments' for the charge and on
    # the relay's and notifications' lines for the event's delivery.
    assert [line["request_id"] for line in access["orders"] if line["trace_id"] == trace_id] == [request_id]
    assert any(line["trace_id"] == trace_id for line in access["payments"])
    assert any(line["trace_id"] == trace_id for line in access["notifications"])

    def delivered_line() -> bool:
        relay = log_lines(traced.relays["orders"].log_text())
        return any(line["message"] == "outbox event delivered" and line.get("trace_id") == trace_id for line in relay)

    wait_for(delivered_line, timeout=10, message="the relay's line for the order's event")
    # Every trace here is recorded (the SDK's default sampler), and every line says so.
    unsampled = [
        (name, line["message"]) for name, found in access.items() for line in found if not line["trace_sampled"]
    ]
    assert unsampled == []


@pytest.fixture(scope="module")
def head_sampled(jaeger, tmp_path_factory) -> Iterator[Stack]:
    """The services, relays and email worker sampling at the head as production does
    (deploy/overlays/production), at a ratio of 0 so that the outcome is certain: no trace that
    starts here is recorded, and a caller's sampled `traceparent` is followed."""
    yield from exporting_stack(
        jaeger,
        tmp_path_factory.mktemp("head-sampled"),
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",
    )


def test_with_head_sampling_an_order_is_one_whole_trace_or_none(head_sampled, jaeger):
    stack = head_sampled
    urls = {name: service.url for name, service in stack.services.items()}
    _, tokens = register_and_login(urls["auth"])
    placed = order_post(urls["orders"], tokens["access_token"])
    delivered_wait(stack)

    def lines_of(trace_id: str) -> dict[str, list[dict]]:
        processes = {**stack.services, "orders relay": stack.relays["orders"]}
        return {
            name: [line for line in log_lines(process.log_text()) if line.get("trace_id") == trace_id]
            for name, process in processes.items()
        }

    # The placement started a trace that was not sampled: its lines name it, and say so.
    (placement,) = [
        line
        for line in log_lines(stack["orders"].log_text())
        if line["logger"] == "apps.access" and line["request_id"] == placed.headers["X-Request-ID"]
    ]
    unsampled = placement["trace_id"]
    assert HEX_TRACE_ID.fullmatch(unsampled) and placement["trace_sampled"] is False
    # The decision went with the trace: the charge in payments (and auth's token, when orders
    # fetched one), the relay's delivery of the event and notifications' filing of it carry the
    # same trace id, none of them sampled.
    wait_for(lambda: lines_of(unsampled)["notifications"], timeout=10, message="notifications' line for the event")
    lines = lines_of(unsampled)
    assert {name for name, found in lines.items() if found} >= {"orders", "payments", "orders relay", "notifications"}
    assert [(name, line["message"]) for name, found in lines.items() for line in found if line["trace_sampled"]] == []

    # A caller's sampled traceparent is followed: that order is one whole trace in Jaeger.
    sampled, _, traced = order_place_traced(urls["orders"], tokens["access_token"])
    assert traced.status_code == 201, traced.text
    delivered_wait(stack)
    trace_wait(jaeger, sampled, lambda trace: trace.services() >= {"orders", "payments", "notifications"})
    assert all(line["trace_sampled"] for found in lines_of(sampled).values() for line in found)
    # The spans of the unsampled trace, had any been exported, would have arrived with these.
    assert jaeger.trace(unsampled) is None


def test_a_trace_backend_that_is_down_costs_no_request(order_traces, traced, jaeger):
    jaeger.stop()
    urls = {name: service.url for name, service in traced.services.items()}
    _, tokens = register_and_login(urls["auth"])
    order_post(urls["orders"], tokens["access_token"])
    delivered_wait(traced)
    assert all(service.process.poll() is None for service in traced.services.values())


def test_jaeger_as_make_up_runs_it_stops_within_honchos_five_seconds_after_its_ui_was_used(tmp_path):
    """`make up` sets OTEL_EXPORTER_OTLP_ENDPOINT for every process it starts, Jaeger's included, and
    Ctrl-C gives each 5 s before SIGKILL. Jaeger traced its own query API to that endpoint by default
    (OTLP/gRPC, to the OTLP/HTTP port: refused), and retried those spans through its exit for 10 s."""
    backend = Jaeger(tmp_path)
    backend.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = backend.otlp_endpoint  # as `make up` points it
    backend.start()
    try:
        for _ in range(5):  # what a look at the UI asks its API
            assert requests.get(f"{backend.url}/api/services", timeout=5).status_code == 200
            assert requests.get(f"{backend.url}/api/traces", params={"service": "orders"}, timeout=5).status_code == 200
        time.sleep(1)  # the spans of those requests, if any were made, are queued for export by now
        started = time.monotonic()
        returncode = backend.stop(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        backend.stop()
    assert (returncode, stopped_in < 5) == (0, True), (
        f"exit {returncode} after {stopped_in:.1f} s:\n{backend.log_text()}"
    )
