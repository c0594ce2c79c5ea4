"""Delete what the auth service no longer needs: old failed logins, long-expired refresh tokens, rate
limit counters idle past every limit's period, login addresses no longer known (run it on a
schedule: deploy/base/auth/prune-cronjob.yaml)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.auth.retention import login_addresses_prune, login_failures_prune, refresh_tokens_prune
from apps.core.ratelimit import rate_limit_counters_prune


def _longest_limit_hours() -> float:
    """The longest any rate limit remembers: a bucket's period, or the window of the login pauses."""
    periods = [getattr(settings, name).period for name in dir(settings) if name.startswith("RATE_LIMIT_")]
    return max([settings.LOGIN_FAILURE_WINDOW_SECONDS, *periods]) / 3600


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
        parser.add_argument(
            "--rate-limits-idle-for", type=float, default=24.0, help="hours; longer than any limit's period"
        )

    def handle(self, *args, login_failures_older_than, refresh_tokens_expired_for, rate_limits_idle_for, **options):
        # Failures inside the throttling window are still counted: never delete those.
        window_hours = getattr(settings, "LOGIN_FAILURE_WINDOW_SECONDS", 0) / 3600
        if login_failures_older_than < window_hours or refresh_tokens_expired_for < 0:
            raise CommandError(f"--login-failures-older-than must be at least the {window_hours:g} h login window")
        if rate_limits_idle_for < (longest := _longest_limit_hours()):
            raise CommandError(f"--rate-limits-idle-for must be at least the {longest:g} h longest limit")
        failures = login_failures_prune(older_than=timedelta(hours=login_failures_older_than))
        tokens = refresh_tokens_prune(expired_for=timedelta(hours=refresh_tokens_expired_for))
        counters = rate_limit_counters_prune(older_than=timedelta(hours=rate_limits_idle_for))
        addresses = login_addresses_prune(older_than=timedelta(days=settings.LOGIN_KNOWN_ADDRESS_DAYS))
        self.stdout.write(
            f"pruned {failures} login failures, {tokens} refresh tokens, "
            f"{counters} rate limit counters, {addresses} login addresses"
        )
