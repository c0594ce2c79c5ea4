from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Platform kernel"

    def ready(self) -> None:
        from apps.core import checks, outbox, schema  # noqa: F401, PLC0415 (register settings checks, OpenAPI extension)

        outbox.outbox_state_register()
