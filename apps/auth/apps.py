from django.apps import AppConfig


class AuthServiceConfig(AppConfig):
    name = "apps.auth"
    # `auth` is django.contrib.auth's label; this service's tables are identity_*.
    label = "identity"
    verbose_name = "Auth service"
