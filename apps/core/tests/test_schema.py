"""The OpenAPI document (apps.core.schema): one problem schema on every error, lists as pages, the
token grants and the required headers as the API checks them."""

import pytest

pytestmark = pytest.mark.django_db

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        return APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_every_error_answer_is_the_problem_schema_as_problem_json(document):
    errors = {
        (name, code): response["content"]
        for name, operation in operations(document)
        for code, response in operation["responses"].items()
        if code >= "400"
    }
    assert len(errors) > 50
    assert {
        name for name, content in errors.items() if content != {"application/problem+json": {"schema": PROBLEM}}
    } == set()


def test_every_operation_documents_a_500_and_every_answer_the_request_id(document):
    for name, operation in operations(document):
        assert "500" in operation["responses"], name
        for code, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["required"] is True, (name, code)


def test_the_problem_schema_has_the_members_every_problem_carries(document):
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "request_id"}
    assert {"errors", "retry_after"} <= set(problem["properties"])


@pytest.mark.parametrize(
    ("operation", "codes"),
    [
        ("GET /api/orders/", {"400", "401", "403", "404", "500", "503"}),
        ("POST /api/orders/", {"400", "401", "403", "409", "413", "415", "422", "500", "503"}),
        ("GET /api/payments/{payment_id}/", {"401", "403", "404", "500", "503"}),
        ("POST /api/auth/register/", {"400", "409", "413", "415", "429", "500"}),
        ("POST /api/auth/token/", {"400", "401", "413", "415", "429", "500"}),
        ("GET /.well-known/jwks.json", {"500"}),
    ],
)
def test_operations_document_the_errors_of_their_kind(document, operation, codes):
    responses = dict(operations(document))[operation]["responses"]
    assert {code for code in responses if code >= "400"} >= codes


def test_a_throttled_answer_documents_its_retry_after(document):
    responses = dict(operations(document))["POST /api/auth/token/"]["responses"]
    assert responses["429"]["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize("operation", ["GET /api/orders/", "GET /api/notifications/"])
def test_lists_are_pages_with_page_and_page_size(document, operation):
    listed = dict(operations(document))[operation]
    assert {parameter["name"] for parameter in listed["parameters"]} >= {"page", "page_size"}
    reference = listed["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert page["properties"]["results"]["type"] == "array"


def test_the_token_endpoint_documents_both_grants(document):
    body = dict(operations(document))["POST /api/auth/token/"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/x-www-form-urlencoded"}
    reference = body["application/json"]["schema"]["$ref"]
    assert body["application/x-www-form-urlencoded"]["schema"]["$ref"] == reference
    grants = document["components"]["schemas"][reference.rsplit("/", 1)[1]]["oneOf"]
    schemas = [document["components"]["schemas"][grant["$ref"].rsplit("/", 1)[1]] for grant in grants]
    assert [sorted(schema["required"]) for schema in schemas] == [
        ["email", "password"],
        ["client_id", "client_secret", "grant_type"],
    ]


@pytest.mark.parametrize(
    "operation", ["POST /api/orders/", "POST /api/payments/", "POST /api/payments/{payment_id}/refund/"]
)
def test_the_idempotency_key_is_required_with_its_limits(document, operation):
    (key,) = [p for p in dict(operations(document))[operation]["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["required"] is True
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}


@pytest.mark.parametrize("service", ["auth", "orders", "payments", "notifications"])
def test_each_services_document_is_valid_openapi_without_warnings(service, tmp_path):
    """The document a service process serves (only its own paths), validated by drf-spectacular."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--format",
            "openapi-json",
            "--file",
            str(tmp_path / "s.json"),
        ],
        cwd=Path(__file__).resolve().parents[3],
        env={"PATH": os.environ["PATH"], "SERVICE": service, "DEBUG": "true", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    paths = json.loads((tmp_path / "s.json").read_text())["paths"]
    prefix = {"auth": ("/api/auth/", "/.well-known/")}.get(service, (f"/api/{service}/",))
    assert paths
    assert all(path.startswith(prefix) for path in paths)
