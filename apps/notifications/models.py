"""The notifications service's data: each user's inbox, the emails sent, and the event ids seen.

Events arrive at least once (outbox relays retry); `ProcessedEvent` is how a repeat is recognised,
and `times_received` shows how often an event was delivered. Its rows are kept for the dedup window
(`manage.py notifications_prune`); the inbox entry made from an event outlives them.
"""

import uuid

from django.db import models
from django.db.models.functions import Now

from apps.core.constraints import OneQueryCheckConstraints


class ProcessedEvent(models.Model):
    event_id = models.UUIDField(primary_key=True)
    type = models.CharField(max_length=64)
    source = models.CharField(max_length=64, help_text="The service client that published it.")
    times_received = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(db_default=Now())
    last_received_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["last_received_at"], name="processed_event_last_received")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class Notification(models.Model):
    """One entry of a user's inbox, made from one event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField()
    # The event it was made from; empty once that event id is past the dedup window and pruned.
    event = models.OneToOneField(
        ProcessedEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="notification"
    )
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


class EmailDelivery(OneQueryCheckConstraints, models.Model):
    """An email to send for a notification: a queue the email worker (`manage.py email_deliver`)
    works through with retries and backoff, as the outbox relays do (`apps.core.work_queue`).

    pending -> sent | failed (refused for good by the mail server, or out of attempts).
    """

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
    # Not before this time: the next retry after a failure, or the end of a worker's lease. Empty on
    # rows of the previous release, which sent inline: the worker never takes them, so an email is
    # never sent by both during a rollout.
    available_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True, db_default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # The W3C `traceparent` of the request that queued the email: each send continues that trace.
    traceparent = models.CharField(max_length=55, blank=True, db_default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"
        indexes = [
            models.Index(fields=["available_at"], name="email_delivery_due", condition=models.Q(status="pending"))
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "sent", "failed"]), name="email_delivery_status_known"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="sent") | models.Q(sent_at__isnull=False),
                name="email_delivery_sent_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"email to {self.recipient} ({self.status})"
