"""Request bodies the database or the interpreter cannot take are a 400 problem, never a 500."""

import json

import pytest
from django.test import Client, override_settings
from rest_framework.exceptions import ParseError

from apps.core.parsers import json_depth_check, storable_text_check

pytestmark = [pytest.mark.django_db, pytest.mark.urls("apps.core.tests.urls")]


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def post(client, raw: str | bytes, content_type="application/json"):
    return client.post("/test/echo", data=raw, content_type=content_type)


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


def test_a_small_deeply_nested_body_is_a_400_not_a_crash(client):
    body = problem(post(client, "[" * 50_000 + "]" * 50_000), 400, "parse_error")
    assert body["detail"] == "JSON nested deeper than 32 levels is not accepted."


def test_nesting_up_to_the_limit_is_parsed():
    json_depth_check("[" * 32 + "]" * 32, 32)
    with pytest.raises(ParseError):
        json_depth_check("[" * 33 + "]" * 33, 32)


def test_brackets_inside_strings_do_not_count_as_nesting():
    json_depth_check(json.dumps({"name": "[" * 1000 + '\\"{' * 100}), 2)


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "a\\u0000b", "count": 1}',
        '{"name": "\\ud800", "count": 1}',
        '{"name": "\\udfff x", "count": 1}',
        '{"na\\u0000me": "a", "count": 1}',
        '{"name": "a", "count": 1, "nested": [{"deep": ["\\ud83d"]}]}',
    ],
    ids=["nul", "lone-high-surrogate", "lone-low-surrogate", "nul-in-a-key", "nested-lone-surrogate"],
)
def test_text_no_database_can_store_is_a_400(client, raw):
    body = problem(post(client, raw), 400, "parse_error")
    assert "cannot be stored" in body["detail"]


def test_a_surrogate_pair_is_ordinary_text(client):
    response = post(client, '{"name": "\\ud83d\\ude00", "count": 1}')
    assert response.status_code == 200
    assert response.json() == {"name": "\U0001f600", "count": 1}


def test_the_first_unstorable_text_is_named_by_its_path():
    with pytest.raises(ParseError, match=r"Text at \$\.lines\[1\]\.sku contains NUL"):
        storable_text_check({"lines": [{"sku": "a"}, {"sku": "b\x00"}]})


@pytest.mark.parametrize(
    "raw",
    ['{"name": "a", "count": NaN}', '{"name": "a", "count": Infinity}', '{"name": "a", "count": ' + "9" * 5000 + "}"],
    ids=["nan", "infinity", "integer-beyond-the-digit-limit"],
)
def test_numbers_json_does_not_have_are_a_400(client, raw):
    problem(post(client, raw), 400, "parse_error")


def test_a_body_that_is_not_utf8_is_a_400(client):
    problem(post(client, b'{"name": "\xff"}'), 400, "parse_error")


@override_settings(MAX_REQUEST_BODY_BYTES=64)
def test_a_body_longer_than_its_declared_length_allows_is_cut_and_refused():
    """Content-Length is checked by the middleware; the parser never reads past the limit either."""
    from io import BytesIO

    from rest_framework.exceptions import APIException

    from apps.core.parsers import JSONParser

    with pytest.raises(APIException) as refused:
        JSONParser().parse(BytesIO(b'{"name": "' + b"a" * 100 + b'"}'))
    assert refused.value.status_code == 413


def test_a_form_body_with_nul_is_a_400(client):
    response = client.post(
        "/api/auth/token/",
        data="grant_type=client_credentials&client_id=a%00b&client_secret=x",
        content_type="application/x-www-form-urlencoded",
    )
    problem(response, 400, "parse_error")
