"""The order read answered without DRF's dispatch (apps.core.direct_read.DirectReadApi) answers every
request exactly as DRF's dispatch of the same view does: status, headers and bytes."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.http import Http404
from django.test import Client, RequestFactory
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from apps.core.direct_read import DirectReadApi
from apps.core.testing import service_client_provision, service_client_token, user_token
from apps.core.tokens import access_token_verify
from apps.orders.apis import OrderDetailApi
from apps.orders.tests.factories import order_make

pytestmark = pytest.mark.django_db

VIEW = OrderDetailApi.as_view()


@pytest.fixture
def placed():
    """(user id, their token, their order's id, another customer's order's id)."""
    user_id, token = user_token()
    orders = [order_make(customer).id for customer in (user_id, str(uuid.uuid4()))]
    return user_id, token, orders[0], orders[1]


@pytest.fixture
def dispatched(monkeypatch) -> list[str]:
    """The paths DRF's dispatch handled."""
    handled: list[str] = []
    original = APIView.dispatch

    def dispatch(self, request, *args, **kwargs):
        handled.append(request.path)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "dispatch", dispatch)
    return handled


def answered(view, method: str, path: str, order_id, **headers) -> tuple[int, dict, bytes]:
    request = RequestFactory().generic(method, path, **headers)
    response = view(request, order_id=order_id)
    if hasattr(response, "render"):
        response.render()
    return response.status_code, dict(response.headers), response.content


def cases(token: str, own, other) -> list[tuple[str, str, object, dict]]:
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    service_token = service_client_token(client_id="orders", scopes=[])
    access_token_verify(service_token)  # known too: refused for its kind, not for being new
    service = {"HTTP_AUTHORIZATION": f"Bearer {service_token}"}
    return [
        ("GET", f"/api/orders/{own}/", own, bearer),
        ("GET", f"/api/orders/{own}/", own, {**bearer, "HTTP_ACCEPT": "*/*"}),
        ("GET", f"/api/orders/{own}/", own, {**bearer, "HTTP_ACCEPT": "application/json"}),
        ("GET", f"/api/orders/{own}/", own, {"HTTP_AUTHORIZATION": f"bearer  {token}"}),
        ("GET", f"/api/orders/{own}/", own, {**bearer, "HTTP_ACCEPT": "application/json; indent=2"}),
        ("GET", f"/api/orders/{own}/", own, {**bearer, "HTTP_ACCEPT": "text/html"}),
        ("GET", f"/api/orders/{own}/?format=json", own, bearer),
        ("GET", f"/api/orders/{own}/?format=xml", own, bearer),
        ("GET", f"/api/orders/{own}/", own, {}),
        ("GET", f"/api/orders/{own}/", own, {"HTTP_AUTHORIZATION": "Bearer not-a-token"}),
        ("GET", f"/api/orders/{own}/", own, {"HTTP_AUTHORIZATION": f"Basic {token}"}),
        ("GET", f"/api/orders/{own}/", own, {"HTTP_AUTHORIZATION": "Bearer "}),
        ("GET", f"/api/orders/{own}/", own, service),
        ("GET", f"/api/orders/{other}/", other, bearer),
        ("GET", f"/api/orders/{uuid.uuid4()}/", uuid.uuid4(), bearer),
        ("HEAD", f"/api/orders/{own}/", own, bearer),
        ("OPTIONS", f"/api/orders/{own}/", own, bearer),
        ("POST", f"/api/orders/{own}/", own, bearer),
        ("DELETE", f"/api/orders/{own}/", own, bearer),
    ]


def test_every_request_is_answered_as_drf_answers_it(placed, dispatched):
    service_client_provision(client_id="orders", secret="x" * 40, scopes=[])
    _user_id, token, own, other = placed
    access_token_verify(token)  # as the first request with it has: from then on it is known
    direct_paths = []
    for number, (method, path, order_id, headers) in enumerate(cases(token, own, other)):
        dispatched.clear()
        direct = answered(VIEW, method, path, order_id, **headers)
        if not dispatched:
            direct_paths.append(number)
        drf = answered(VIEW.through_drf, method, path, order_id, **headers)
        assert direct == drf, (number, method, path, headers)
    assert direct_paths == [0, 1, 2, 3]  # the user's own order, JSON accepted, no query string


def test_a_token_is_verified_by_drf_the_first_time_and_directly_after(placed, dispatched):
    _user_id, token, own, _other = placed
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    first = answered(VIEW, "GET", f"/api/orders/{own}/", own, **bearer)
    assert dispatched == [f"/api/orders/{own}/"]
    second = answered(VIEW, "GET", f"/api/orders/{own}/", own, **bearer)
    assert dispatched == [f"/api/orders/{own}/"]  # not again
    assert first == second
    status, headers, content = second
    assert (status, headers["Content-Type"], headers["Allow"]) == (200, "application/json", "GET, HEAD, OPTIONS")
    assert str(own).encode() in content


def through_the_middleware(token: str, order_id, *, direct: bool) -> tuple[int, str, object]:
    # An Accept with a parameter is one the direct path leaves to DRF: the same request, both ways.
    accept = "application/json" if direct else "application/json; q=1"
    response = Client(raise_request_exception=False).get(
        f"/api/orders/{order_id}/", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT=accept
    )
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, response["Content-Type"], body


def test_through_the_middleware_the_answer_is_drfs_too(placed):
    _user_id, token, own, _other = placed
    access_token_verify(token)
    direct = through_the_middleware(token, own, direct=True)
    assert direct == through_the_middleware(token, own, direct=False)
    assert direct[:2] == (200, "application/json")
    assert direct[2]["id"] == str(own)


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (serializers.ValidationError({"x": ["bad"]}), 400),
        (Http404("No such order."), 404),
        (OperationalError("the database went away"), 503),
    ],
    ids=["validation error", "404", "database error"],
)
def test_what_the_read_raises_is_answered_as_drf_answers_it(placed, monkeypatch, raised, status):
    _user_id, token, own, _other = placed
    access_token_verify(token)

    def read(principal, order_id):
        raise raised

    monkeypatch.setattr(OrderDetailApi, "read", staticmethod(read))
    direct = through_the_middleware(token, own, direct=True)
    assert direct == through_the_middleware(token, own, direct=False)
    assert direct[:2] == (status, "application/problem+json")


def test_a_view_with_another_policy_is_refused_when_the_urls_are_built():
    class Elsewhere(DirectReadApi):
        permission_classes = [IsAuthenticated]

    with pytest.raises(ImproperlyConfigured, match="permissions"):
        Elsewhere.as_view()


def test_a_known_service_token_never_reaches_the_read(placed, monkeypatch):
    _user_id, _token, own, _other = placed
    service_client_provision(client_id="orders", secret="x" * 40, scopes=[])
    service_token = service_client_token(client_id="orders", scopes=[])
    access_token_verify(service_token)
    reads = []
    original = OrderDetailApi.read
    monkeypatch.setattr(OrderDetailApi, "read", staticmethod(lambda *a, **k: reads.append(a) or original(*a, **k)))
    status, _headers, _content = answered(
        VIEW, "GET", f"/api/orders/{own}/", own, HTTP_AUTHORIZATION=f"Bearer {service_token}"
    )
    assert (status, reads) == (403, [])
