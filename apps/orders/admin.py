"""Admin for support engineers: an order's journey (lines, status history, payment and refund ids,
the events it emitted and whether they were delivered), all read-only."""

from django.contrib import admin
from django.utils.html import format_html_join

from apps.core.admin import ReadOnlyAdmin, ReadOnlyInline
from apps.core.outbox import outbox_event_retry
from apps.orders.models import Order, OrderEvent, OrderLine, OrderStatusChange


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ["position", "sku", "quantity", "unit_price"]


class OrderStatusChangeInline(ReadOnlyInline):
    model = OrderStatusChange
    fields = ["created_at", "from_status", "to_status", "reason"]
    readonly_fields = ["created_at"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "customer_id", "status", "total", "currency", "payment_method", "created_at"]
    list_filter = ["status", "currency", "payment_method"]
    search_fields = ["=id", "=customer_id", "=payment_id", "customer_email", "idempotency_key"]
    readonly_fields = ["events"]
    inlines = [OrderLineInline, OrderStatusChangeInline]

    @admin.display(description="Outbox events")
    def events(self, order):
        rows = OrderEvent.objects.filter(aggregate_id=order.id).order_by("created_at")
        return format_html_join(
            "",
            "<div>{} {}: {} after {} attempt(s)</div>",
            ((event.created_at, event.type, event.state, event.attempts) for event in rows),
        )


@admin.action(description="Deliver the selected events again now")
def retry_events(modeladmin, request, queryset):
    outbox_event_retry(queryset.model, event_ids=list(queryset.values_list("pk", flat=True)))


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "aggregate_id", "attempts", "last_status", "delivered_at", "failed_at", "created_at"]
    list_filter = ["type", "last_status"]
    search_fields = ["=id", "=aggregate_id", "=user_id"]
    actions = [retry_events]
