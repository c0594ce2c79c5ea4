"""Spans as the OpenTelemetry SDK records them (its in-memory exporter): requests continue the
caller's trace, calls between services carry it, the outbox keeps it for the relay, logs carry it."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from apps.core import outbox, service_calls, tracing
from apps.core.logging import ContextFilter, JsonFormatter
from apps.core.outbox import DeliveryResult
from apps.orders.models import OrderEvent

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


def hex_ids(span) -> tuple[str, str]:
    return trace.format_trace_id(span.context.trace_id), trace.format_span_id(span.context.span_id)


def test_a_request_continues_the_callers_trace_and_is_named_by_its_route(client, spans):
    response = client.get(f"/api/orders/{uuid.uuid4()}/", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 401
    (span,) = spans.get_finished_spans()
    assert (span.name, span.kind) == ("GET /api/orders/<uuid:order_id>/", SpanKind.SERVER)
    assert hex_ids(span)[0] == TRACE_ID
    assert trace.format_span_id(span.parent.span_id) == PARENT_ID
    assert span.attributes["http.route"] == "/api/orders/<uuid:order_id>/"
    assert span.attributes["http.response.status_code"] == 401
    assert span.attributes["platform.request_id"] == response["X-Request-ID"]
    assert span.status.status_code == StatusCode.UNSET  # a 4xx is the caller's error, not the server's
    assert span.resource.attributes["platform.component"] == "web"


@pytest.mark.parametrize("header", ["", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "00-zz-yy-01"])
def test_a_request_without_a_usable_traceparent_starts_a_trace_of_its_own(client, spans, header):
    response = client.get("/api/orders/not-a-uuid/", headers={"traceparent": header} if header else {})
    assert response.status_code == 404
    (span,) = spans.get_finished_spans()
    assert span.parent is None
    assert span.context.is_valid
    assert span.name == "GET"  # no route matched


@pytest.mark.django_db
def test_probes_and_scrapes_are_not_traced(client, spans):
    for path in ("/healthz", "/readyz", "/metrics"):
        client.get(path)
    assert spans.get_finished_spans() == ()


class Headers(BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.received.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def callee():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Headers)
    httpd.received, httpd.status = [], 201
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    service_calls.sessions_close()


def test_a_call_to_another_service_is_a_client_span_whose_context_the_callee_receives(spans, callee):
    url = f"http://127.0.0.1:{callee.server_address[1]}"
    with tracing.tracer.start_as_current_span("request") as request:
        service_calls.call("POST", url, "/api/things/", auth=None, json={})
        callee.status = 503
        service_calls.call("POST", url, "/api/things/", auth=None, json={})
    ok, failed, _ = spans.get_finished_spans()
    assert (ok.kind, ok.name, ok.parent.span_id) == (SpanKind.CLIENT, "POST", request.get_span_context().span_id)
    assert ok.attributes["url.full"] == f"{url}/api/things/"
    assert ok.attributes["http.response.status_code"] == 201
    trace_id, span_id = hex_ids(ok)
    # version-trace id-parent id-flags; the flags say sampled (01), and random trace id (02) too.
    assert callee.received[0]["traceparent"].split("-")[:3] == ["00", trace_id, span_id]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "503"


def test_a_call_that_gets_no_answer_is_an_error_span(spans):
    with pytest.raises(service_calls.ServiceCallError):
        service_calls.call("POST", "http://127.0.0.1:9", "/", auth=None, json={}, timeout=(0.2, 0.2))
    (span,) = spans.get_finished_spans()
    assert (span.status.status_code, span.attributes["error.type"]) == (StatusCode.ERROR, "ConnectionError")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("result", "outcome", "status"),
    [
        (DeliveryResult(delivered=True, status=202), "delivered", StatusCode.UNSET),
        (DeliveryResult(delivered=False, status=503, error="busy"), "retry", StatusCode.ERROR),
        (DeliveryResult(delivered=False, status=422, error="no", permanent=True), "failed", StatusCode.ERROR),
    ],
)
def test_an_events_delivery_continues_the_trace_that_wrote_it(spans, result, outcome, status):
    with tracing.tracer.start_as_current_span("request") as request, transaction.atomic():
        event = outbox.outbox_event_add(
            OrderEvent, event_type="order.paid", user_id=USER, aggregate_id=uuid.uuid4(), data={"n": 1}
        )
    written = request.get_span_context()
    stored = OrderEvent.objects.get(pk=event.pk).traceparent
    assert stored.split("-")[:3] == [
        "00",
        trace.format_trace_id(written.trace_id),
        trace.format_span_id(written.span_id),
    ]
    spans.clear()

    report = outbox.relay_batch(OrderEvent, relay="relay-a", deliver=lambda event: result)
    assert report.claimed == 1
    (send,) = spans.get_finished_spans()
    assert (send.name, send.kind) == ("send order.paid", SpanKind.PRODUCER)
    assert (send.context.trace_id, send.parent.span_id) == (written.trace_id, written.span_id)
    assert send.attributes["messaging.message.id"] == str(event.id)
    assert send.attributes["platform.outbox.outcome"] == outcome
    assert send.status.status_code == status


@pytest.mark.django_db
def test_an_event_written_outside_any_trace_is_delivered_in_a_trace_of_its_own(spans):
    with transaction.atomic():
        outbox.outbox_event_add(
            OrderEvent, event_type="order.paid", user_id=USER, aggregate_id=uuid.uuid4(), data={"n": 1}
        )
    # No span was current, so nothing to continue (for example an event a shell session wrote).
    assert spans.get_finished_spans() == ()
    outbox.relay_batch(OrderEvent, relay="relay-a", deliver=lambda event: DeliveryResult(delivered=True, status=202))
    (send,) = spans.get_finished_spans()
    assert send.parent is None and send.context.is_valid


def log_line(message: str) -> dict:
    record = logging.LogRecord("apps.test", logging.INFO, __file__, 1, message, (), None)
    ContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_a_log_line_carries_the_ids_of_the_span_it_was_written_in(span_recorder):
    outside = log_line("outside")
    assert (outside["trace_id"], outside["span_id"], outside["trace_sampled"]) == ("", "", False)
    with tracing.tracer.start_as_current_span("work") as span:
        line = log_line("inside")
    context = span.get_span_context()
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)
    assert line["trace_sampled"] is True


def test_a_log_line_says_when_its_trace_is_not_recorded(span_recorder):
    """A caller that decided not to sample (flags 00): the request's span follows it, records
    nothing, and its log lines keep the trace id with `trace_sampled` false."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with tracing.server_span("GET", {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"}, {}) as span:
        line = log_line("inside")
    assert not span.is_recording()
    assert (line["trace_id"], line["trace_sampled"]) == (trace_id, False)
    assert [
        s for s in span_recorder.get_finished_spans() if trace.format_trace_id(s.context.trace_id) == trace_id
    ] == []


def test_an_exception_leaving_a_span_is_recorded_on_it_and_the_span_is_ended_and_no_longer_current(spans):
    with (
        pytest.raises(ValueError, match="no such order"),
        tracing.job_span("settle"),
        tracing.client_span("POST", "http://payments/", server_address="payments", server_port=None),
    ):
        raise ValueError("no such order")
    client, job = spans.get_finished_spans()
    for span in (client, job):  # the error crosses both blocks, and each records it
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "ValueError: no such order"
        (event,) = span.events
        assert (event.name, event.attributes["exception.type"]) == ("exception", "ValueError")
    assert client.parent.span_id == job.context.span_id
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_generator_closed_inside_a_span_does_not_make_it_an_error(spans):
    """GeneratorExit is how Python closes a generator, not a failure (as OpenTelemetry's own
    `use_span` has it): a span around a `yield` ends without an error when its consumer stops early."""

    def pages():
        with tracing.job_span("pages"):
            yield 1
            yield 2

    iterator = pages()
    next(iterator)
    iterator.close()
    (span,) = spans.get_finished_spans()
    assert (span.status.status_code, span.events) == (StatusCode.UNSET, ())


def test_at_exit_spans_a_stopped_collector_cannot_take_hold_the_process_for_seconds_not_the_exporters_timeout():
    """`make up`'s Ctrl-C stops Jaeger with the services: a process's last spans then have nowhere to
    go, and the exporter's retries would hold its exit for OTEL_EXPORTER_OTLP_TIMEOUT (10 s here)."""
    with socket.socket() as stopped:  # bound and never listening: every connection to it is refused
        stopped.bind(("127.0.0.1", 0))
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{stopped.getsockname()[1]}/v1/traces", timeout=10)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(tracing._SpanBatches(exporter))
        provider.get_tracer("test").start_span("the last request").end()
        started = time.monotonic()
        provider.shutdown()  # what the SDK's exit handler calls
        took = time.monotonic() - started
    assert tracing.EXIT_EXPORT_SECONDS <= took < tracing.EXIT_EXPORT_SECONDS + 3, took
