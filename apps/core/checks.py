"""Settings a service needs to do its work, checked when a process starts instead of on first use.

Two levels. The PLATFORM deploy checks look at the configuration (`manage.py check --deploy`, run
by CI and deployments wherever the settings are, secrets' files mounted or not). Startup checks
use it too (they may read a mounted key), and run with the deploy checks in every web process as
it starts (apps.wsgi): a worker that would fail its first request does not boot, and gunicorn
stops. Neither runs for `migrate`, whose Job needs no secret but the database's.
"""

import os
from collections.abc import Callable

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

PLATFORM = "platform"
_startup_checks: list[Callable[[], None]] = []


def startup_check_register(check: Callable[[], None]) -> None:
    """Run `check` when a web process starts; it raises ImproperlyConfigured to stop the start."""
    if check not in _startup_checks:
        _startup_checks.append(check)


@checks.register(PLATFORM, deploy=True)
def service_client_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Services that call others (`calls_services` in apps.services) need their client credentials."""
    if not any(service.calls_services for service in settings.SERVED):
        return []
    missing = [name for name in ("SERVICE_CLIENT_ID", "SERVICE_CLIENT_SECRET") if not getattr(settings, name)]
    if not missing:
        return []
    message = f"{' and '.join(missing)} not set: this service calls others with its client credentials"
    hint = "Provision the client in auth (manage.py service_client_ensure) and give its id and secret."
    if settings.DEBUG:
        return [checks.Warning(message, hint=hint, id="core.W001")]
    return [checks.Error(message, hint=hint, id="core.E001")]


# The samplers OpenTelemetry's SDK takes from OTEL_TRACES_SAMPLER (opentelemetry.sdk.trace.sampling);
# the ratio ones read the fraction of new traces to record from OTEL_TRACES_SAMPLER_ARG.
TRACE_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


@checks.register(PLATFORM, deploy=True)
def trace_sampler_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The SDK meets a sampler it does not know, or a ratio that is not one, with a warning and
    every trace recorded: a typo in production's sampling would go on costing what sampling saves.
    Here it stops the process instead (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG)."""
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not sampler:
        return []  # the SDK's default: parentbased_always_on
    if sampler not in TRACE_SAMPLERS:
        return [
            checks.Error(
                f"OTEL_TRACES_SAMPLER={sampler!r} is not a sampler the OpenTelemetry SDK knows",
                hint=f"One of {', '.join(TRACE_SAMPLERS)}.",
                id="core.E002",
            )
        ]
    if sampler not in RATIO_SAMPLERS:
        return []
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "")
    try:
        ratio = float(argument)
    except ValueError:
        ratio = None
    if ratio is None or not 0.0 <= ratio <= 1.0:
        return [
            checks.Error(
                f"OTEL_TRACES_SAMPLER_ARG={argument!r} is not a fraction from 0 to 1 for sampler {sampler}",
                hint="The fraction of new traces to record, 0.1 for one in ten.",
                id="core.E003",
            )
        ]
    return []


@checks.register(checks.Tags.security, deploy=True)
def admin_csrf_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Django's own CSRF deploy checks (security.W003, W016) look for CsrfViewMiddleware in
    MIDDLEWARE; it runs from ADMIN_MIDDLEWARE, for the admin's pages (AdminOnlyMiddleware), so the
    same is checked there."""
    if (
        "apps.core.middleware.AdminOnlyMiddleware" not in settings.MIDDLEWARE
        or "django.middleware.csrf.CsrfViewMiddleware" not in settings.ADMIN_MIDDLEWARE
    ):
        return [
            checks.Warning(
                "The admin's forms have no CSRF protection",
                hint="Keep apps.core.middleware.AdminOnlyMiddleware in MIDDLEWARE and CsrfViewMiddleware "
                "in ADMIN_MIDDLEWARE.",
                id="core.W002",
            )
        ]
    if not settings.CSRF_COOKIE_SECURE:
        return [checks.Warning("CSRF_COOKIE_SECURE is off: the admin's CSRF cookie may go over HTTP", id="core.W003")]
    return []


def platform_checks_raise() -> None:
    """Raise ImproperlyConfigured listing what fails: serious PLATFORM checks, then startup checks."""
    errors = [
        f"{message.id}: {message.msg}"
        for message in checks.run_checks(tags=[PLATFORM], include_deployment_checks=True)
        if message.is_serious()
    ]
    for check in _startup_checks:
        try:
            check()
        except ImproperlyConfigured as error:
            errors.append(str(error))
    if errors:
        raise ImproperlyConfigured("; ".join(errors))
