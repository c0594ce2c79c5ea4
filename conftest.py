"""Fixtures shared by every test: API clients, users and tokens of the in-process test server."""

import pytest
from rest_framework.test import APIClient


@pytest.fixture(scope="session", autouse=True)
def _tracer_provider_installed():
    """The test process installs its one tracer provider as the web process does, before any test:
    a command's own `tracing.configure()` (the relay's, the email worker's) is then a no-op, so the
    order the tests run in does not decide the resource every span carries."""
    from apps.core import tracing

    tracing.configure("web")


@pytest.fixture(scope="session")
def span_recorder(_tracer_provider_installed):
    """Every span the test process ends, recorded synchronously (OpenTelemetry's in-memory exporter)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


@pytest.fixture
def spans(span_recorder):
    """The spans ended during this test."""
    span_recorder.clear()
    return span_recorder


@pytest.fixture(autouse=True)
def _fresh_key_caches():
    """Keys and JWKS caches are per process; each test starts without what another one loaded."""
    from apps.auth import keys
    from apps.core import tokens

    keys.forget_active_key()
    tokens.reset_key_set()
    yield
    keys.forget_active_key()
    tokens.reset_key_set()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def password() -> str:
    from apps.core.testing import PASSWORD

    return PASSWORD


@pytest.fixture
def user(db, password):
    from apps.auth.services import user_register

    return user_register(email="ada@example.com", password=password)


@pytest.fixture
def user_tokens(user, password):
    from apps.auth.services import user_login

    return user_login(email=user.email, password=password, client_address="127.0.0.1")


@pytest.fixture
def user_client(user_tokens) -> APIClient:
    from apps.core.testing import bearer_client

    return bearer_client(user_tokens.access_token)
