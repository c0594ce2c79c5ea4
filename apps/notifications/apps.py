from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"
    verbose_name = "Notifications service"

    def ready(self) -> None:
        from apps.notifications import services  # noqa: PLC0415 (models are ready only now)

        services.notifications_state_register()
