"""The email queue keeps the trace: an email queued while notifications handles an event remembers
that request's `traceparent`, and each attempt to send it is a client span in that trace (the
OpenTelemetry SDK's in-memory exporter records them)."""

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from apps.core import tracing
from apps.notifications import services
from apps.notifications.models import EmailDelivery

pytestmark = pytest.mark.django_db

USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
PAID = {"order_id": "o-1", "total": 2800, "currency": "EUR", "email": "ada@example.com", "payment_id": "p-1"}


def queued_in_a_request():
    """An event accepted inside a span, as notifications' request handling does it: (that span's context)."""
    with tracing.tracer.start_as_current_span("POST /api/notifications/events/") as request:
        services.event_accept(event_id=uuid.uuid4(), event_type="order.paid", user_id=USER, data=PAID, source="orders")
    return request.get_span_context()


@pytest.mark.parametrize(
    ("result", "outcome", "status"),
    [
        (services.SendResult(sent=True), "sent", StatusCode.UNSET),
        (services.SendResult(sent=False, error="451 busy"), "retry", StatusCode.ERROR),
        (services.SendResult(sent=False, error="550 no such user", permanent=True), "failed", StatusCode.ERROR),
    ],
)
def test_each_send_of_a_queued_email_continues_the_trace_that_queued_it(spans, result, outcome, status):
    queued = queued_in_a_request()
    stored = EmailDelivery.objects.get().traceparent
    assert stored.split("-")[:3] == ["00", trace.format_trace_id(queued.trace_id), trace.format_span_id(queued.span_id)]
    spans.clear()

    report = services.email_deliveries_send(worker="w1", send=lambda delivery: result)

    assert report.claimed == 1
    (send,) = spans.get_finished_spans()
    assert (send.name, send.kind) == ("send email", SpanKind.CLIENT)
    assert (send.context.trace_id, send.parent.span_id) == (queued.trace_id, queued.span_id)
    assert send.attributes["platform.email.delivery_id"] == EmailDelivery.objects.get().pk
    assert (send.attributes["platform.email.attempt"], send.attributes["platform.email.outcome"]) == (1, outcome)
    assert send.status.status_code == status


def test_an_email_queued_outside_any_trace_is_sent_in_a_trace_of_its_own(spans):
    services.event_accept(event_id=uuid.uuid4(), event_type="order.paid", user_id=USER, data=PAID, source="orders")
    assert EmailDelivery.objects.get().traceparent == ""

    services.email_deliveries_send(worker="w1", send=lambda delivery: services.SendResult(sent=True))

    (send,) = spans.get_finished_spans()
    assert send.parent is None and send.context.is_valid
