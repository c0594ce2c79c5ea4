"""Admin for support engineers: a user's inbox, the emails sent, and how often each event arrived."""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.notifications.models import EmailDelivery, Notification, ProcessedEvent
from apps.notifications.services import email_delivery_retry


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_id", "type", "title", "created_at", "read_at"]
    list_filter = ["type"]
    search_fields = ["=id", "=user_id", "=event__event_id"]


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "source", "times_received", "received_at", "last_received_at"]
    list_filter = ["type", "source"]
    search_fields = ["=event_id"]


@admin.action(description="Queue the selected emails to be sent again")
def resend(modeladmin, request, queryset):
    email_delivery_retry(delivery_ids=list(queryset.values_list("pk", flat=True)))


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["notification", "recipient", "status", "attempts", "available_at", "sent_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["recipient", "=notification__id", "=notification__user_id"]
    list_select_related = ["notification"]
    actions = [resend]
