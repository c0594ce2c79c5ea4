"""The notifications service's data: each user's inbox, the emails sent, and the event ids seen.

Events arrive at least once (outbox relays retry); `ProcessedEvent` is how a repeat is recognised,
and `times_received` shows how often an event was delivered.
"""

import uuid

from django.db import models
from django.db.models.functions import Now


class ProcessedEvent(models.Model):
    event_id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=64)
    source = models.CharField(max_length=64, help_text="The service client that published it.")
    times_received = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(db_default=Now())
    last_received_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class Notification(models.Model):
    """One entry of a user's inbox, made from one event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField()
    event = models.OneToOneField(ProcessedEvent, on_delete=models.PROTECT, related_name="notification")
    type = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    body = models.TextField()
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_default=Now())
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user_id", "-created_at"], name="notification_inbox_newest")]

    def __str__(self) -> str:
        return self.title


class EmailDelivery(models.Model):
    """An email sent (or not) for a notification, through Django's email backend."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    notification = models.OneToOneField(Notification, on_delete=models.CASCADE, related_name="email")
    recipient = models.EmailField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"

    def __str__(self) -> str:
        return f"email to {self.recipient} ({self.status})"
