"""The client address: REMOTE_ADDR, unless a trusted proxy says whom it forwards for."""

import ipaddress

import pytest
from django.test import RequestFactory

from apps.core.client_address import client_address


@pytest.fixture
def proxies(settings):
    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.1/32")]


def request_from(remote: str, forwarded: str | None = None):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **meta)


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXY_NETWORKS = []
    assert client_address(request_from("10.1.2.3", "198.51.100.7")) == "10.1.2.3"


def test_from_an_untrusted_peer_the_header_is_ignored(proxies):
    assert client_address(request_from("203.0.113.5", "198.51.100.7")) == "203.0.113.5"


def test_through_a_trusted_proxy_the_client_is_the_hop_it_appended(proxies):
    assert client_address(request_from("10.1.2.3", "198.51.100.7")) == "198.51.100.7"


def test_what_the_client_wrote_itself_left_of_its_address_is_not_believed(proxies):
    assert client_address(request_from("10.1.2.3", "6.6.6.6, 198.51.100.7")) == "198.51.100.7"


def test_every_trusted_hop_is_skipped(proxies):
    assert client_address(request_from("10.1.2.3", "198.51.100.7, 192.0.2.1, 10.9.9.9")) == "198.51.100.7"


def test_a_hop_that_is_not_an_address_stops_the_walk(proxies):
    assert client_address(request_from("10.1.2.3", "198.51.100.7, unknown")) == "10.1.2.3"


def test_an_address_has_one_spelling(proxies):
    assert client_address(request_from("10.1.2.3", "2001:DB8:0:0::1")) == "2001:db8::1"
