from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"
    verbose_name = "Payments service"

    def ready(self) -> None:
        # Its counters exist from the start (at 0), not from the first request that imports the views.
        from apps.payments import services  # noqa: F401, PLC0415 (models are ready only now)
