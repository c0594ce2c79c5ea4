from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "apps.orders"
    label = "orders"
    verbose_name = "Orders service"

    def ready(self) -> None:
        # Its counters exist from the start (at 0), not from the first request that imports the views.
        from apps.orders import services  # noqa: F401, PLC0415 (models are ready only now)
