"""The auth service's Django app: its label, and the key loader it lends the kernel."""

from django.apps import AppConfig


class AuthServiceConfig(AppConfig):
    name = "apps.auth"
    # `auth` is django.contrib.auth's label; this service's tables are identity_*.
    label = "identity"
    verbose_name = "Auth service"

    def ready(self) -> None:
        # `services` for its counters: they exist from the start, at 0, not from the first request.
        from apps.auth import checks, keys, services  # noqa: F401, PLC0415 (models are ready only now)
        from apps.core import tokens  # noqa: PLC0415
        from apps.core.checks import startup_check_register  # noqa: PLC0415

        startup_check_register(checks.signing_key_startup_check)

        # The process that signs tokens verifies them with the keys it publishes, read from its own
        # database: no HTTP call to itself, and the kernel never has to know the auth app.
        tokens.local_key_loader_register(keys.jwks)
