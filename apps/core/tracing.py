"""Traces: OpenTelemetry spans for each API request, each call between services and each outbox
delivery, joined by W3C trace context, so that one order is one trace across orders, payments, auth
and notifications.

- An API request's server span continues the caller's `traceparent` header (TraceMiddleware).
- A call between services is a client span whose context leaves in `traceparent`
  (`service_calls.call`).
- The outbox carries the trace: an event keeps the `traceparent` of the span that wrote it, and the
  relay's delivery span (a PRODUCER span, as OpenTelemetry's messaging conventions have it)
  continues it, however much later the delivery happens; the consumer's request joins the same trace.
- Every log line written inside a span carries its `trace_id` and `span_id` (apps.core.logging):
  from a trace, the logs of every process it crossed are one search away, and back. With head
  sampling (OTEL_TRACES_SAMPLER) a line's `trace_sampled` says whether that trace was recorded.

Each process calls `configure()` once as it starts: the WSGI application, the relays, the workers.
Spans leave over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
is set, in batches, off the request thread; the OpenTelemetry SDK's own variables apply
(OTEL_TRACES_SAMPLER, OTEL_BSP_SCHEDULE_DELAY, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, ...).
Without an endpoint spans are still made, so trace ids still reach the logs and the next service,
and are exported nowhere. A collector that is down costs dropped spans, never a failed request, and
never more than EXIT_EXPORT_SECONDS of a stopping process's exit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from types import TracebackType

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# W3C trace context, whatever OTEL_PROPAGATORS says: it is what crosses every hop, the outbox included.
_propagator = TraceContextTextMapPropagator()
tracer = trace.get_tracer("apps.core")  # follows the provider `configure()` installs
_configured = False


# At exit a process gives the spans still queued this long to leave, then drops them. The exporter
# retries a collector that does not answer for OTEL_EXPORTER_OTLP_TIMEOUT (10 s by default), and
# the collector is often stopping too (`make up`'s Ctrl-C stops Jaeger with everything else; a node
# being drained): waiting that out held every process's exit past its supervisor's patience
# (honcho's 5 s, then SIGKILL) for spans that had nowhere to go.
EXIT_EXPORT_SECONDS = 2.0


class _SpanBatches(BatchSpanProcessor):
    """OpenTelemetry's batch processor, whose shutdown (the tracer provider's, at exit) waits at most
    EXIT_EXPORT_SECONDS for the queued spans, then stops the exporter's retries."""

    def shutdown(self) -> None:
        # The SDK's own shutdown waits 30 s; its batch processor takes the bound as an argument.
        self._batch_processor.shutdown(timeout_millis=EXIT_EXPORT_SECONDS * 1000)


def _exporter_from_environment() -> SpanExporter | None:
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415 (only when used)

    return OTLPSpanExporter()  # reads the endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


def configure(component: str, *, exporter: SpanExporter | None = None) -> bool:
    """Install this process's tracer provider: spans named for the service (`service.name`), its
    version and deploy color, and `component` (web, outbox-relay, email-worker, settle-job).
    `exporter` replaces the OTLP exporter the environment names (tests pass an in-memory one).
    Once per process; False when it was already done or the SDK is disabled."""
    global _configured  # one provider per process, as OpenTelemetry's global is
    if _configured or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    resource = Resource.create(
        {
            "service.name": settings.SERVICE,
            "service.namespace": "platform",
            "service.version": settings.APP_VERSION,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "platform.color": settings.DEPLOY_COLOR,
            "platform.component": component,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = exporter or _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(_SpanBatches(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def ids() -> tuple[str, str, bool]:
    """The current trace id and span id in their W3C (hex) form, and whether the trace is sampled
    (recorded and exported: there is a trace to find); two empty strings and False outside a span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "", "", False
    return (
        trace.format_trace_id(span_context.trace_id),
        trace.format_span_id(span_context.span_id),
        span_context.trace_flags.sampled,
    )


def headers_inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to an outgoing request's headers."""
    _propagator.inject(headers)


def traceparent() -> str:
    """The current span's context as a `traceparent` value, for an outbox event to carry; empty
    outside a span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


def _context_from(carrier: Mapping[str, str]) -> Context:
    # A malformed header yields an empty context: the span starts a trace of its own.
    return _propagator.extract(carrier)


def _context_stored(traceparent: str) -> Context:
    # A `traceparent` kept in a row (an outbox event, a queued email); empty: a trace of its own.
    return _context_from({"traceparent": traceparent} if traceparent else {})


class _Current:
    """A started span, current inside the `with` block and ended as the block leaves: what the SDK's
    `start_as_current_span` does, without its three generator-based context managers (its own, its
    proxy tracer's and `use_span`'s): in a loop of request spans they took a fifth of a recorded
    one's time and a third of an unsampled one's. As there, an exception (an `Exception`, not a
    `GeneratorExit`) leaving the block is recorded on the span and makes it an error."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span):
        self._span = span
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, _kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        otel_context.detach(self._token)
        if isinstance(error, Exception) and self._span.is_recording():
            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.end()


def server_span(method: str, headers: Mapping[str, str], attributes: dict) -> _Current:
    """The span of one incoming request, continuing the trace the caller's headers carry."""
    return _Current(
        tracer.start_span(method, context=_context_from(headers), kind=SpanKind.SERVER, attributes=attributes)
    )


def server_span_finish(span: Span, *, method: str, route: str | None, status: int, request_id: str) -> None:
    """Name the span by its route, as OpenTelemetry's HTTP conventions ask (`GET /api/orders/{id}/`
    style names stay few; paths with ids would not), and record the answer: a 5xx is an error."""
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("platform.request_id", request_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def client_span(method: str, url: str, *, server_address: str, server_port: int | None) -> _Current:
    """The span of one call to another service (all its retries: they are the client's business)."""
    attributes = {"http.request.method": method, "url.full": url, "server.address": server_address}
    if server_port is not None:
        attributes["server.port"] = server_port
    return _Current(tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes))


def client_span_finish(span: Span, *, status: int | None, error: str = "") -> None:
    """Record a call's answer; any 4xx or 5xx, or no answer at all, is an error of the client span."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if status is None or status >= 400:
        span.set_attribute("error.type", error or str(status))
        span.set_status(Status(StatusCode.ERROR, error or None))


def delivery_span(*, parent_traceparent: str, event_type: str, event_id: str, attempt: int) -> _Current:
    """The span of one outbox delivery, a child of the span that wrote the event."""
    span = tracer.start_span(
        f"send {event_type}",
        context=_context_stored(parent_traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "outbox",
            "messaging.operation.type": "send",
            "messaging.destination.name": event_type,
            "messaging.message.id": event_id,
            "platform.outbox.attempt": attempt,
        },
    )
    return _Current(span)


def delivery_span_finish(span: Span, *, outcome: str) -> None:
    """Record what became of the delivery (outbox.DELIVERY_OUTCOMES); anything but delivered is an error."""
    span.set_attribute("platform.outbox.outcome", outcome)
    if outcome != "delivered":
        span.set_status(Status(StatusCode.ERROR, outcome))


def email_span(*, parent_traceparent: str, delivery_id: int, attempt: int) -> _Current:
    """The span of one attempt to send a queued email, a child of the request that queued it."""
    span = tracer.start_span(
        "send email",
        context=_context_stored(parent_traceparent),
        kind=SpanKind.CLIENT,
        attributes={"platform.email.delivery_id": delivery_id, "platform.email.attempt": attempt},
    )
    return _Current(span)


def email_span_finish(span: Span, *, outcome: str) -> None:
    """Record what became of the attempt (sent, retry, failed, lost); anything but sent is an error."""
    span.set_attribute("platform.email.outcome", outcome)
    if outcome != "sent":
        span.set_status(Status(StatusCode.ERROR, outcome))


def job_span(name: str, attributes: dict | None = None) -> _Current:
    """A span for work no request started (a scheduled job's pass): the root of its own trace."""
    return _Current(tracer.start_span(name, context=Context(), kind=SpanKind.INTERNAL, attributes=attributes))
