"""Send the notification emails that are due: `manage.py email_deliver` (a loop) or `--once`.

Run it beside the notifications web process with the same environment (its database and the
EMAIL_* settings). Several workers may run at once: each claims its own emails. SIGTERM is looked at
before each email: the worker records the one in hand, releases the rest and exits 0.
"""

from django.core.management.base import BaseCommand, CommandError

from apps.core import metrics, tracing, work_queue
from apps.notifications import services


class Command(BaseCommand):
    help = "Send queued notification emails with retries and exponential backoff."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="send what is due now, then exit")
        parser.add_argument("--batch-size", type=int, default=20, help="emails claimed per transaction")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds to wait when nothing is due")
        parser.add_argument("--max-attempts", type=int, default=12, help="attempts before an email is failed")
        parser.add_argument("--backoff-base", type=float, default=10.0, help="seconds before the first retry")
        parser.add_argument("--backoff-max", type=float, default=600.0, help="longest wait between retries")
        metrics.worker_arguments_add(parser)

    def handle(self, *args, once, batch_size, poll_interval, max_attempts, backoff_base, backoff_max, **options):
        if batch_size < 1 or max_attempts < 1 or poll_interval <= 0 or backoff_base <= 0 or backoff_max < backoff_base:
            raise CommandError("sizes and intervals must be positive, and --backoff-max at least --backoff-base")
        tracing.configure("email-worker")  # each send continues the trace of the request that queued it
        worker = work_queue.worker_id()
        stop = work_queue.StopSignal()
        if not once:
            stop.install()
        self.stdout.write(f"email worker {worker}")
        if metrics.worker_serve(metrics_port=options["metrics_port"], metrics_host=options["metrics_host"]):
            self.stdout.write(f"metrics on {options['metrics_host']}:{options['metrics_port']}/metrics")
        self.stdout.flush()  # the lines above in the log at once, even with stdout a file and no work for a while

        def work_pass() -> bool:
            report = services.email_deliveries_send(
                worker=worker,
                should_stop=stop,
                batch_size=batch_size,
                max_attempts=max_attempts,
                backoff_base=backoff_base,
                backoff_max=backoff_max,
            )
            if report.claimed:
                self.stdout.write(
                    f"claimed {report.claimed}, sent {report.sent}, retry {report.retried}, failed {report.failed}, "
                    f"released {report.released}, lost {report.lost}"
                )
                self.stdout.flush()
            return report.claimed > 0 and not report.interrupted

        work_queue.worker_loop(work_pass, once=once, poll_interval=poll_interval, stop=stop)
        self.stdout.write(f"email worker {worker} stopped")
