"""A service that lacks what it needs does not start (gunicorn exits), instead of failing on first use."""

import time
import uuid

import pytest

from tests.live import LiveService

pytestmark = pytest.mark.e2e


def production_env(workdir, **overrides) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATA_DIR": str(workdir),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "WEB_CONCURRENCY": "1",
        **overrides,
    }


@pytest.mark.parametrize(
    ("service", "overrides", "reason"),
    [
        ("auth", {"AUTH_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, "the auth signing key cannot be loaded"),
        ("auth", {}, "auth.E001: the auth service has no signing key"),
        ("orders", {"SERVICE_CLIENT_ID": "orders"}, "core.E001: SERVICE_CLIENT_SECRET not set"),
        (
            "notifications",
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10"},
            "core.E003: OTEL_TRACES_SAMPLER_ARG='10' is not a fraction from 0 to 1",
        ),
    ],
    ids=["auth-key-unreadable", "auth-no-key", "orders-no-client-secret", "notifications-sampling-ratio"],
)
def test_gunicorn_stops_when_the_service_lacks_what_it_needs(tmp_path, service, overrides, reason):
    process = LiveService(name=service, env=production_env(tmp_path, **overrides), workdir=tmp_path)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"{service} exited with") as stopped:
        process.start(timeout=60)
    assert time.monotonic() - started < 30
    assert reason in str(stopped.value)
