"""Delete what the payments service no longer needs: idempotency keys completed more than a day ago
(as Stripe does) and outbox events delivered long ago (run it on a schedule:
deploy/base/payments/prune-cronjob.yaml). Payments and refunds are kept."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.core.outbox import outbox_delivered_prune
from apps.payments.models import PaymentEvent
from apps.payments.services import idempotency_records_prune


class Command(BaseCommand):
    help = "Delete completed idempotency records and delivered outbox events past their retention."

    def add_arguments(self, parser):
        parser.add_argument("--keys-older-than", type=float, default=24.0, help="hours since a key's request completed")
        parser.add_argument("--delivered-older-than", type=float, default=7.0, help="days since delivery")

    def handle(self, *args, keys_older_than, delivered_older_than, **options):
        if keys_older_than < 0 or delivered_older_than < 0:
            raise CommandError("retention periods must not be negative")
        keys = idempotency_records_prune(older_than=timedelta(hours=keys_older_than))
        events = outbox_delivered_prune(PaymentEvent, older_than=timedelta(days=delivered_older_than))
        self.stdout.write(f"pruned {keys} idempotency records, {events} delivered outbox events")
