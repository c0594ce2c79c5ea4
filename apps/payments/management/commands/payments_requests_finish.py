"""Finish charges and refunds whose request died after taking its key (run it on a schedule:
deploy/base/payments/requests-finish-cronjob.yaml); see apps.payments.services."""

from django.core.management.base import BaseCommand

from apps.payments.services import payments_requests_finish


class Command(BaseCommand):
    help = "Redo, from the stored request, in-flight idempotent requests whose lease ran out."

    def handle(self, *args, **options):
        report = payments_requests_finish()
        self.stdout.write(f"finished {report.finished}, refused {report.refused}, failed {report.failed}")
