"""Request ids in and out, one JSON access line per request, probes answered before host checks."""

import io
import json
import logging
import os
import uuid

import pytest
from django.test import Client

from apps.core import context
from apps.core.logging import ContextFilter, JsonFormatter

pytestmark = pytest.mark.django_db


def test_a_sane_incoming_request_id_is_kept():
    response = Client().get("/api/schema/", HTTP_X_REQUEST_ID="abc-123.XYZ")
    assert response["X-Request-ID"] == "abc-123.XYZ"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 200, "semi;colon", "new\nline"])
def test_an_insane_request_id_is_replaced(incoming):
    response = Client().get("/api/schema/", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32


def test_each_request_gets_a_different_id():
    client = Client()
    assert client.get("/api/schema/")["X-Request-ID"] != client.get("/api/schema/")["X-Request-ID"]


def test_a_made_request_id_is_a_random_uuid_and_forked_workers_never_share_one():
    made = [context.request_id_new() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(uuid.UUID(hex=made_id).version == 4 and len(made_id) == 32 for made_id in made)

    # gunicorn forks its workers from one process: each must draw its own ids.
    readers = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one id to the parent, then gone without running any teardown
            os.write(write_end, context.request_id_new().encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end) as reader:
            readers.append(reader.read())
    assert len({*readers, context.request_id_new()}) == 3


def test_probes_answer_for_a_host_not_in_allowed_hosts():
    response = Client().get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_other_paths_refuse_a_host_not_in_allowed_hosts():
    response = Client(raise_request_exception=False).get("/api/schema/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_the_access_line_is_json_with_service_and_request_id():
    """The handler is built the way settings.LOGGING builds the stdout one."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    access_logger = logging.getLogger("apps.access")
    access_logger.addHandler(handler)
    try:
        Client().get("/api/schema/", HTTP_X_REQUEST_ID="req-42")
    finally:
        access_logger.removeHandler(handler)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["method"] == "GET"
    assert line["path"] == "/api/schema/"
    assert line["status"] == 200
    assert line["service"] == "all"
    assert line["request_id"] == "req-42"
    assert isinstance(line["duration_ms"], float)


def test_extra_fields_never_overwrite_the_members_every_line_has():
    record = logging.LogRecord("apps.test", logging.INFO, __file__, 1, "hello", (), None)
    record.level = "forged"
    record.ts = "yesterday"
    record.path = "/x"
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["extra_level"], line["extra_ts"], line["path"]) == ("info", "forged", "yesterday", "/x")
    assert line["ts"] != "yesterday"
