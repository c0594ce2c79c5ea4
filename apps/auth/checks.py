"""What the auth service needs to start: a signing key. Without one it would start, report ready,
and fail every login.

`check --deploy` sees that one is configured (a file is read only where it is mounted: at start,
`signing_key_startup_check`, run by apps.wsgi through the kernel's startup checks).
"""

from django.conf import settings
from django.core import checks

from apps.core.checks import PLATFORM

HINT = "Set AUTH_SIGNING_KEY_FILE (a mounted Secret) or AUTH_SIGNING_KEY (the PEM itself)."


@checks.register(PLATFORM, deploy=True)
def signing_key_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.AUTH_SIGNING_KEY_FILE or settings.AUTH_SIGNING_KEY or settings.DEBUG:
        return []  # with DEBUG on and no key, development generates one of its own
    return [checks.Error("the auth service has no signing key", hint=HINT, id="auth.E001")]


def signing_key_startup_check() -> None:
    """Load the key as signing will: unreadable, not RSA or too short stops the process."""
    from apps.auth.keys import signing_key_load  # noqa: PLC0415 (imports models)

    signing_key_load()
