"""Every 4xx/5xx is application/problem+json with the request id: DRF errors, 404s, crashes."""

import json

import pytest
from django.test import Client, override_settings

pytestmark = [pytest.mark.django_db, pytest.mark.urls("apps.core.tests.urls")]

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def problem_of(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == response.status_code
    assert body["request_id"] == response["X-Request-ID"]
    return body


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def test_unknown_path_is_a_404_problem(client):
    body = problem_of(client.get("/no/such/thing"))
    assert body["code"] == "not_found"
    assert body["detail"] == "No resource at /no/such/thing."


def test_unhandled_exception_outside_drf_is_a_500_problem_without_internals(client):
    response = client.get("/test/crash")
    body = problem_of(response)
    assert response.status_code == 500
    assert body["code"] == "internal_error"
    assert "boom" not in response.content.decode()


def test_unhandled_exception_inside_drf_is_a_500_problem(client):
    response = client.get("/test/crash-api")
    assert response.status_code == 500
    assert problem_of(response)["code"] == "internal_error"


@pytest.mark.parametrize("path", ["/test/database-gone", "/test/database-gone-api"])
@pytest.mark.parametrize("debug", [False, True])
def test_a_lost_database_connection_is_a_503_problem_to_retry(client, path, debug):
    with override_settings(DEBUG=debug):
        response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    body = problem_of(response)
    assert body["code"] == "database_unavailable"
    assert "127.0.0.1" not in response.content.decode()


def test_malformed_json_is_a_400_problem(client):
    response = client.post("/test/echo", data='{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert problem_of(response)["code"] == "parse_error"


def test_wrong_types_are_a_validation_problem_listing_each_field(client):
    response = client.post("/test/echo", data={"name": ["x"], "count": "many"}, content_type="application/json")
    body = problem_of(response)
    assert response.status_code == 400
    assert body["code"] == "validation_error"
    assert set(body["errors"]) == {"name", "count"}


def test_unknown_fields_are_refused(client):
    response = client.post(
        "/test/echo", data={"name": "a", "count": 1, "colour": "red"}, content_type="application/json"
    )
    body = problem_of(response)
    assert response.status_code == 400
    assert body["errors"] == {"colour": ["Unknown field."]}


def test_a_json_array_instead_of_an_object_is_a_validation_problem(client):
    response = client.post("/test/echo", data=[1, 2], content_type="application/json")
    assert response.status_code == 400
    assert problem_of(response)["code"] == "validation_error"


def test_non_json_content_type_is_a_415_problem(client):
    response = client.post("/test/echo", data="name=a", content_type="text/plain")
    assert response.status_code == 415
    assert problem_of(response)["code"] == "unsupported_media_type"


def test_method_not_allowed_is_a_405_problem(client):
    response = client.delete("/test/echo")
    assert response.status_code == 405
    assert problem_of(response)["code"] == "method_not_allowed"


@override_settings(MAX_REQUEST_BODY_BYTES=1024)
def test_huge_body_is_a_413_problem_before_parsing(client):
    response = client.post("/test/echo", data=json.dumps({"name": "a" * 5000}), content_type="application/json")
    assert response.status_code == 413
    assert problem_of(response)["code"] == "payload_too_large"


def test_valid_request_passes_through(client):
    response = client.post("/test/echo", data={"name": "a", "count": 2}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"name": "a", "count": 2}


# --- the same contract with DEBUG on, as `make up` runs: Django's technical pages never leave ------

LEAKS = ("Traceback", "SECRET_KEY", "settings", "/work/", "site-packages", "<html", "<!DOCTYPE")


def assert_no_internals(response) -> None:
    text = response.content.decode(errors="replace")
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {text[:300]}"


@override_settings(DEBUG=True)
def test_with_debug_on_an_unknown_path_is_a_404_problem(client):
    response = client.get("/no/such/thing", HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert problem_of(response)["detail"] == "No resource at /no/such/thing."
    assert_no_internals(response)


@override_settings(DEBUG=True)
def test_with_debug_on_a_foreign_host_is_a_400_problem(client):
    response = client.get("/test/echo", HTTP_HOST="evil.example.com", HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    assert problem_of(response)["code"] == "bad_request"
    assert_no_internals(response)


@override_settings(DEBUG=True)
@pytest.mark.parametrize("path", ["/test/crash", "/test/crash-api"])
def test_with_debug_on_a_crash_is_a_500_problem_without_traceback(client, path):
    response = client.get(path)  # no Accept: Django's debug page would be its HTML one
    assert response.status_code == 500
    assert problem_of(response)["code"] == "internal_error"
    assert_no_internals(response)
    assert "boom" not in response.content.decode()


@override_settings(DEBUG=True)
def test_with_debug_on_a_wrong_method_keeps_its_allow_header(client):
    response = client.delete("/test/echo")
    assert response.status_code == 405
    assert problem_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "POST, OPTIONS"


def test_a_csrf_failure_in_the_admin_is_a_403_problem():
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert problem_of(response)["code"] == "csrf_failed"


def test_a_probe_that_fails_carries_the_request_id(client, settings, tmp_path):
    settings.DRAIN_FILE = str(tmp_path / "draining")
    (tmp_path / "draining").touch()
    response = client.get("/readyz", HTTP_X_REQUEST_ID="probe-1")
    assert response.status_code == 503
    assert problem_of(response)["request_id"] == "probe-1"


def test_django_s_500_handler_answers_503_for_a_lost_database_outside_any_view(rf):
    """A middleware's query fails the same way: Django calls handler500 with the error in hand."""
    from django.db import InterfaceError

    from apps.core.problems import server_error

    try:
        raise InterfaceError("connection already closed")
    except InterfaceError:
        response = server_error(rf.get("/api/orders/"))
    assert (response.status_code, response["Retry-After"]) == (503, "1")
    assert json.loads(response.content)["code"] == "database_unavailable"
    assert server_error(rf.get("/api/orders/")).status_code == 500  # nothing in hand: a bug


def _raised_from(cause: Exception):
    """A Django database error as Django raises it: wrapping the driver's error as its cause."""
    from django.db import OperationalError

    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as error:
        return error


def test_only_connection_failures_count_as_the_database_being_unavailable():
    import sqlite3

    import psycopg

    from apps.core.problems import is_database_unavailable

    class AdminShutdown(psycopg.OperationalError):
        sqlstate = "57P01"

    class UndefinedColumn(psycopg.OperationalError):
        sqlstate = "42703"

    assert is_database_unavailable(_raised_from(psycopg.OperationalError("server closed the connection")))
    assert is_database_unavailable(_raised_from(AdminShutdown("terminating connection")))
    assert is_database_unavailable(_raised_from(sqlite3.OperationalError("database is locked")))
    assert not is_database_unavailable(_raised_from(sqlite3.OperationalError("no such table: payments_payment")))
    assert not is_database_unavailable(_raised_from(UndefinedColumn("column does not exist")))
    assert not is_database_unavailable(RuntimeError("boom"))
