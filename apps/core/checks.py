"""Settings a service needs to do its work, checked when a process starts instead of on first use.

Two levels. The PLATFORM deploy checks look at the configuration (`manage.py check --deploy`, run
by CI and deployments wherever the settings are, secrets' files mounted or not). Startup checks
use it too (they may read a mounted key), and run with the deploy checks in every web process as
it starts (apps.wsgi): a worker that would fail its first request does not boot, and gunicorn
stops. Neither runs for `migrate`, whose Job needs no secret but the database's.
"""

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
