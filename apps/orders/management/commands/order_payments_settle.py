"""Settle orders left pending by a payments outage whose clients never retried (run it on a schedule)."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from apps.orders.services import orders_pending_settle


class Command(BaseCommand):
    help = "Ask payments again, with each order's own payment key, about orders still pending."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=60.0, help="seconds since the order was placed")

    def handle(self, *args, older_than, **options):
        counts = orders_pending_settle(older_than=timedelta(seconds=older_than))
        self.stdout.write(f"settled {counts['settled']}, still pending {counts['still_pending']}")
