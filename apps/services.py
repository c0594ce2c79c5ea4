"""The service registry: which Django apps and URL modules each value of SERVICE brings up.

One codebase, one image, four services. Settings and the URL root both read this table, so a
process only installs, migrates and routes the service it was started for.
"""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Service:
    name: str
    app: str  # dotted path of the AppConfig module
    urls: str  # dotted path of the URL module mounted at the site root
    default_port: int
    calls_services: bool = False  # makes calls of its own, so it needs its client credentials


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Service("auth", "apps.auth", "apps.auth.urls", 8001),
        Service("orders", "apps.orders", "apps.orders.urls", 8002, calls_services=True),
        Service("payments", "apps.payments", "apps.payments.urls", 8003, calls_services=True),
        Service("notifications", "apps.notifications", "apps.notifications.urls", 8004),
    )
}

ALL = "all"
CHOICES = (*SERVICES, ALL)


class UnknownServiceError(ImproperlyConfigured):
    pass


def services_for(name: str) -> list[Service]:
    """The services one process serves for a value of SERVICE; `all` serves every one."""
    if name == ALL:
        return list(SERVICES.values())
    try:
        return [SERVICES[name]]
    except KeyError:
        raise UnknownServiceError(
            f"SERVICE={name!r} is not a service of this platform; choose one of: {', '.join(CHOICES)}"
        ) from None
