"""/healthz, /readyz, /version and /metrics as every service serves them."""

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_checking_dependencies():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ready_with_database_and_migrations():
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_while_draining(tmp_path):
    drain_file = tmp_path / "draining"
    drain_file.touch()
    with override_settings(DRAIN_FILE=str(drain_file)):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["checks"] == {"draining": "the process is draining before shutdown"}


def test_readyz_is_503_with_pending_migrations(monkeypatch):
    from apps.core import probes

    monkeypatch.setattr(probes, "_migrations_applied", False)
    monkeypatch.setattr(
        probes.MigrationExecutor,
        "migration_plan",
        lambda self, targets: [(type("M", (), {"app_label": "identity", "name": "0002_next"}), False)],
    )
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"migrations": "1 migration(s) not applied, first identity.0002_next"}


@override_settings(SERVICE="orders", APP_VERSION="1.2.3", GIT_SHA="abc1234", DEPLOY_COLOR="green")
def test_version_names_service_version_sha_and_color():
    assert Client().get("/version").json() == {
        "service": "orders",
        "version": "1.2.3",
        "git_sha": "abc1234",
        "color": "green",
    }


def test_metrics_is_prometheus_exposition():
    client = Client()
    client.get("/api/schema/")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "django_http_requests_total_by_method_total" in response.content.decode()


def test_probe_paths_do_not_accept_writes():
    response = Client(raise_request_exception=False).post("/healthz")
    assert response.status_code == 404
