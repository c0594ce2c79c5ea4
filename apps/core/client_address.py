"""The address of the client a request comes from, believing X-Forwarded-For only from our proxies.

Behind a gateway, REMOTE_ADDR is the gateway's address and the client's is in X-Forwarded-For,
which anyone can also write themselves. Each trusted proxy appends the address it received the
request from, so the header is read from the right, skipping TRUSTED_PROXIES, and the first
address not among them is the client. Without trusted proxies, REMOTE_ADDR is the client.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXY_NETWORKS)


def _normalized(address: str) -> str:
    """One spelling per address (`2001:DB8::1` and `2001:db8:0::1` are one client)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def client_address(request: HttpRequest) -> str:
    remote = _normalized(request.META.get("REMOTE_ADDR", ""))
    if not _trusted(remote):
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote  # a hop no proxy of ours wrote: believe nothing further left
        if not _trusted(hop):
            return _normalized(hop)
    return _normalized(hops[0]) if hops else remote
