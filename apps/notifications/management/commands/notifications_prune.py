"""Forget event ids past the dedup window (run it on a schedule:
deploy/base/notifications/prune-cronjob.yaml). The inbox entries made from them stay."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.notifications.services import processed_events_prune

# Outbox relays retry an undelivered event with a backoff capped at 5 minutes for as long as it
# takes; 30 days is far beyond any outage an event would still be redelivered after.
DEDUP_WINDOW_DAYS = 30.0


class Command(BaseCommand):
    help = "Delete processed event ids last received longer ago than the dedup window."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=DEDUP_WINDOW_DAYS, help="days: the dedup window")

    def handle(self, *args, older_than, **options):
        if older_than < 1:
            raise CommandError("--older-than is the dedup window: at least 1 day")
        events = processed_events_prune(older_than=timedelta(days=older_than))
        self.stdout.write(f"pruned {events} processed event ids")
