"""Admin for support engineers: a payment with its refunds, the idempotency keys, the outbox.

Everything is read-only: money moves through the API only, so every change has its key and event.
"""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin, ReadOnlyInline
from apps.core.outbox import outbox_event_retry
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund


class RefundInline(ReadOnlyInline):
    model = Refund
    readonly_fields = ["id", "amount", "reason", "created_by", "created_at"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "order_id",
        "user_id",
        "amount",
        "currency",
        "status",
        "decline_code",
        "refunded_amount",
        "created_at",
    ]
    list_filter = ["status", "currency", "decline_code"]
    search_fields = ["=id", "=order_id", "=user_id"]
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "payment", "amount", "reason", "created_by", "created_at"]
    search_fields = ["=id", "=payment__id", "=payment__order_id"]
    list_select_related = ["payment"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "key", "state", "response_status", "replays", "created_at", "completed_at"]
    list_filter = ["state", "client_id", "response_status"]
    search_fields = ["key"]


@admin.action(description="Deliver the selected events again now")
def retry_events(modeladmin, request, queryset):
    outbox_event_retry(queryset.model, event_ids=list(queryset.values_list("pk", flat=True)))


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "type",
        "user_id",
        "aggregate_id",
        "attempts",
        "last_status",
        "delivered_at",
        "failed_at",
        "created_at",
    ]
    list_filter = ["type", "last_status"]
    search_fields = ["=id", "=aggregate_id", "=user_id"]
    actions = [retry_events]
