"""Content negotiation (apps.core.api.ContentNegotiation): the same renderer and media type as DRF's
own negotiation for every Accept header and format override, and the same 406 where DRF refuses."""

import pytest
from django.http import Http404
from rest_framework import exceptions, renderers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.core.api import ContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "application/*",
    "text/html",
    "text/html, */*;q=0.8",
    "application/json, text/html",
    "APPLICATION/JSON",
    "*/*; q=0.5",
    "application/problem+json",
    "image/png",
    "",
]
RENDERER_SETS = {
    "json": [renderers.JSONRenderer()],
    "json, browsable": [renderers.JSONRenderer(), renderers.BrowsableAPIRenderer()],
    "browsable, json": [renderers.BrowsableAPIRenderer(), renderers.JSONRenderer()],
}


def negotiated(negotiation, accept, query, renderer_set, suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"/api/orders/{query}", **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, RENDERER_SETS[renderer_set], suffix)
    except (exceptions.NotAcceptable, Http404) as refused:
        return type(refused)
    return type(renderer), media_type


@pytest.mark.parametrize("renderer_set", RENDERER_SETS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?format=xml", "?page=2"])
@pytest.mark.parametrize("suffix", [None, "json"])
def test_every_accept_header_is_negotiated_as_drf_negotiates_it(renderer_set, query, suffix):
    for accept in ACCEPTS:
        assert negotiated(ContentNegotiation(), accept, query, renderer_set, suffix) == negotiated(
            DefaultContentNegotiation(), accept, query, renderer_set, suffix
        ), accept


def test_the_api_answers_json_to_what_clients_send(client):
    for accept in (None, "*/*", "application/json"):
        headers = {} if accept is None else {"HTTP_ACCEPT": accept}
        response = client.get("/api/orders/", **headers)
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
