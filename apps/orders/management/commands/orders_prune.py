"""Delete what the orders service no longer needs: outbox events delivered long ago (run it on a
schedule: deploy/base/orders/prune-cronjob.yaml). Orders and their history are kept."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.core.outbox import outbox_delivered_prune
from apps.orders.models import OrderEvent


class Command(BaseCommand):
    help = "Delete delivered outbox events past their retention."

    def add_arguments(self, parser):
        parser.add_argument("--delivered-older-than", type=float, default=7.0, help="days since delivery")

    def handle(self, *args, delivered_older_than, **options):
        if delivered_older_than < 0:
            raise CommandError("--delivered-older-than must not be negative")
        events = outbox_delivered_prune(OrderEvent, older_than=timedelta(days=delivered_older_than))
        self.stdout.write(f"pruned {events} delivered outbox events")
