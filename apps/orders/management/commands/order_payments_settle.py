"""Finish orders nobody is working on (run it on a schedule): charges left pending by a payments
outage whose clients never retried, and cancellations whose refund payments has not confirmed."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from apps.core import tracing
from apps.orders.services import orders_unsettled_settle


class Command(BaseCommand):
    help = "Ask payments again, with each order's own payment and refund keys, about orders not settled yet."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=float, default=60.0, help="seconds since payments was last asked about the order"
        )

    def handle(self, *args, older_than, **options):
        tracing.configure("settle-job")
        with tracing.job_span("orders settle", {"platform.older_than_seconds": older_than}) as span:
            report = orders_unsettled_settle(older_than=timedelta(seconds=older_than))
            span.set_attributes({"platform.settled": report.settled, "platform.still_open": report.still_open})
        stopped = "; stopped: payments is not answering" if report.stopped else ""
        self.stdout.write(f"settled {report.settled}, still open {report.still_open}{stopped}")
