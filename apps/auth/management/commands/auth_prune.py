"""Delete what the auth service no longer needs: old failed logins and long-expired refresh tokens
(run it on a schedule: deploy/base/auth/prune-cronjob.yaml)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.auth.retention import login_failures_prune, refresh_tokens_prune


class Command(BaseCommand):
    help = "Delete failed logins and expired refresh tokens past their retention."

    def add_arguments(self, parser):
        parser.add_argument(
            "--login-failures-older-than",
            type=float,
            default=24.0,
            help="hours; longer than any login throttling window",
        )
        parser.add_argument(
            "--refresh-tokens-expired-for", type=float, default=24.0, help="hours since a refresh token expired"
        )

    def handle(self, *args, login_failures_older_than, refresh_tokens_expired_for, **options):
        # Failures inside the throttling window are still counted: never delete those.
        window_hours = getattr(settings, "LOGIN_FAILURE_WINDOW_SECONDS", 0) / 3600
        if login_failures_older_than < window_hours or refresh_tokens_expired_for < 0:
            raise CommandError(f"--login-failures-older-than must be at least the {window_hours:g} h login window")
        failures = login_failures_prune(older_than=timedelta(hours=login_failures_older_than))
        tokens = refresh_tokens_prune(expired_for=timedelta(hours=refresh_tokens_expired_for))
        self.stdout.write(f"pruned {failures} login failures, {tokens} refresh tokens")
