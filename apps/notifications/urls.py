"""Routes of the notifications service under /api/notifications/."""

from django.urls import path

from apps.notifications import apis

urlpatterns = [
    path("api/notifications/", apis.NotificationListApi.as_view(), name="notification-list"),
    path("api/notifications/events/", apis.EventPublishApi.as_view(), name="notification-event-publish"),
    path(
        "api/notifications/<uuid:notification_id>/read/", apis.NotificationReadApi.as_view(), name="notification-read"
    ),
]
