"""Reads of the notifications service: a user's inbox, never anyone else's."""

import uuid

from django.db.models import QuerySet
from django.http import Http404

from apps.notifications.models import Notification


def notification_list(*, user_id: str, unread_only: bool = False) -> QuerySet[Notification]:
    notifications = Notification.objects.filter(user_id=user_id).order_by("-created_at", "-id")
    if unread_only:
        notifications = notifications.filter(read_at__isnull=True)
    return notifications


def notification_get(*, user_id: str, notification_id: uuid.UUID) -> Notification:
    notification = Notification.objects.filter(user_id=user_id, pk=notification_id).first()
    if notification is None:
        raise Http404("No such notification.")
    return notification
