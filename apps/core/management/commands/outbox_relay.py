"""Deliver this service's outbox events: `manage.py outbox_relay` (a loop) or `--once` (one pass).

Run it beside the web process of every service that writes events (orders, payments), with the same
environment. Several relays may run at once: each claims its own rows (see apps.core.outbox).
SIGTERM is looked at before each event: the relay records the delivery in hand, releases the rest of
its batch and exits 0, within one delivery's budget of the signal.
"""

from django.core.management.base import BaseCommand, CommandError

from apps.core import metrics, outbox, tracing, work_queue


class Command(BaseCommand):
    help = "Deliver outbox events with retries and exponential backoff; several relays may run at once."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
        parser.add_argument("--batch-size", type=int, default=50, help="events claimed per transaction")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds to wait when nothing is due")
        parser.add_argument(
            "--lease",
            type=float,
            default=None,
            help="seconds one event stays with this relay; default: the slowest delivery plus a margin",
        )
        parser.add_argument("--backoff-base", type=float, default=1.0, help="seconds before the first retry")
        parser.add_argument("--backoff-max", type=float, default=300.0, help="longest wait between retries")
        metrics.worker_arguments_add(parser)

    def handle(self, *args, once, batch_size, poll_interval, lease, backoff_base, backoff_max, **options):
        if batch_size < 1 or poll_interval <= 0 or backoff_base <= 0 or backoff_max < backoff_base:
            raise CommandError("sizes and intervals must be positive, and --backoff-max at least --backoff-base")
        budget = outbox.delivery_lease_seconds()
        if lease is not None and lease < budget:
            raise CommandError(f"--lease must cover one delivery: at least {budget:.1f} s with these timeouts")
        models = outbox.outbox_models()
        if not models:
            raise CommandError("this service has no outbox (only orders and payments emit events)")
        relay = work_queue.worker_id()
        tracing.configure("outbox-relay")  # each delivery continues the trace its event was written in
        stop = work_queue.StopSignal()
        if not once:
            stop.install()
        self.stdout.write(f"outbox relay {relay} for {', '.join(m._meta.label for m in models)}")
        if metrics.worker_serve(metrics_port=options["metrics_port"], metrics_host=options["metrics_host"]):
            self.stdout.write(f"metrics on {options['metrics_host']}:{options['metrics_port']}/metrics")
        self.stdout.flush()  # the lines above in the log at once, even with stdout a file and no work for a while

        def work_pass() -> bool:
            again = False
            for model in models:
                report = outbox.relay_batch(
                    model,
                    relay=relay,
                    should_stop=stop,
                    batch_size=batch_size,
                    lease_seconds=lease,
                    backoff_base=backoff_base,
                    backoff_max=backoff_max,
                )
                if report.claimed:
                    self.stdout.write(
                        f"{model._meta.label}: claimed {report.claimed}, delivered {report.delivered}, "
                        f"retry {report.retried}, failed {report.failed}, released {report.released}, "
                        f"lost {report.lost}"
                    )
                    self.stdout.flush()
                again = again or (report.claimed > 0 and not report.interrupted)
            return again

        work_queue.worker_loop(work_pass, once=once, poll_interval=poll_interval, stop=stop)
        self.stdout.write(f"outbox relay {relay} stopped")
