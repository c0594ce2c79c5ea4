"""Deliver this service's outbox events: `manage.py outbox_relay` (a loop) or `--once` (one pass).

Run it beside the web process of every service that writes events (orders, payments), with the same
environment. Several relays may run at once: each claims its own rows (see apps.core.outbox).
"""

import logging
import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from apps.core import outbox

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Deliver outbox events with retries and exponential backoff; several relays may run at once."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
        parser.add_argument("--batch-size", type=int, default=50, help="events claimed per transaction")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds to wait when nothing is due")
        parser.add_argument("--lease", type=float, default=60.0, help="seconds a claim lasts before others retake it")
        parser.add_argument("--backoff-base", type=float, default=1.0, help="seconds before the first retry")
        parser.add_argument("--backoff-max", type=float, default=300.0, help="longest wait between retries")

    def handle(self, *args, once, batch_size, poll_interval, lease, backoff_base, backoff_max, **options):
        if batch_size < 1 or poll_interval <= 0 or lease <= 0 or backoff_base <= 0 or backoff_max < backoff_base:
            raise CommandError("sizes and intervals must be positive, and --backoff-max at least --backoff-base")
        models = outbox.outbox_models()
        if not models:
            raise CommandError("this service has no outbox (only orders and payments emit events)")
        relay = outbox.relay_id()
        stopping = []
        if not once:
            # SIGTERM (Kubernetes, honcho) finishes the batch in hand and exits: nothing half-recorded.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.append(True))
        self.stdout.write(f"outbox relay {relay} for {', '.join(m._meta.label for m in models)}")
        while True:
            worked = 0
            for model in models:
                close_old_connections()  # a database restart costs one failed pass, not the relay
                try:
                    report = outbox.relay_batch(
                        model,
                        relay=relay,
                        batch_size=batch_size,
                        lease_seconds=lease,
                        backoff_base=backoff_base,
                        backoff_max=backoff_max,
                    )
                except DatabaseError:
                    logger.exception("outbox relay pass failed; retrying after the poll interval")
                    continue
                worked += report.claimed
                if report.claimed:
                    self.stdout.write(
                        f"{model._meta.label}: claimed {report.claimed}, delivered {report.delivered}, "
                        f"retry {report.retried}, failed {report.failed}"
                    )
            if stopping or (once and not worked):
                return
            if not worked:
                deadline = time.monotonic() + poll_interval
                while not stopping and time.monotonic() < deadline:
                    time.sleep(min(0.1, poll_interval))
