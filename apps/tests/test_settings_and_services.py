"""SERVICE decides what a process installs and serves; settings refuse insecure production values."""

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from apps.services import CHOICES, SERVICES, UnknownServiceError, services_for

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = tempfile.mkdtemp(prefix="settings-test-")


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`manage.py check` in a fresh process with exactly this environment (plus PATH)."""
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "apps.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _signing_key_file() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = Path(DATA_DIR) / "signing-key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "api.example.com",
    "DATA_DIR": DATA_DIR,
    # What the services need to do their work (apps.core.checks): auth its key, callers their client.
    "AUTH_SIGNING_KEY_FILE": _signing_key_file(),
    "SERVICE_CLIENT_ID": "a-service",
    "SERVICE_CLIENT_SECRET": secrets.token_urlsafe(32),
}


def test_all_serves_every_service():
    assert [service.name for service in services_for("all")] == ["auth", "orders", "payments", "notifications"]


def test_one_service_serves_only_itself():
    assert services_for("payments") == [SERVICES["payments"]]


def test_unknown_service_is_refused_with_the_valid_choices():
    with pytest.raises(UnknownServiceError, match="choose one of: auth, orders, payments, notifications, all"):
        services_for("billing")


def test_choices_are_the_four_services_and_all():
    assert CHOICES == ("auth", "orders", "payments", "notifications", "all")


def test_process_with_unknown_service_does_not_start():
    result = run_check({**PRODUCTION, "SERVICE": "billing"})
    assert result.returncode != 0
    assert "SERVICE='billing' is not a service of this platform" in result.stderr


def test_production_refuses_to_start_without_secret_key():
    result = run_check({"SERVICE": "orders", "ALLOWED_HOSTS": "api.example.com", "DATA_DIR": DATA_DIR})
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = run_check({"SERVICE": "orders", "SECRET_KEY": "x" * 50, "DATA_DIR": DATA_DIR})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is required when DEBUG is off" in result.stderr


def test_production_refuses_a_missing_service():
    result = run_check(PRODUCTION)
    assert result.returncode != 0
    assert "SERVICE is not set" in result.stderr


@pytest.mark.parametrize("service", CHOICES)
def test_deploy_check_is_clean_for_every_service(service):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "apps.settings", **PRODUCTION, "SERVICE": service},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("service", CHOICES)
def test_every_service_has_its_migrations(service):
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "apps.settings", **PRODUCTION, "SERVICE": service},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", ["orders", "payments", "notifications"])
def test_a_service_process_installs_only_its_own_app(service):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.apps import apps; "
            "print(sorted(c.name for c in apps.get_app_configs() if c.name.startswith('apps.')))",
        ],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "apps.settings", **PRODUCTION, "SERVICE": service},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == str(sorted(["apps.core", f"apps.{service}"]))


@pytest.mark.parametrize(
    ("debug", "backend"),
    [
        ("false", "django.core.mail.backends.smtp.EmailBackend"),
        ("true", "django.core.mail.backends.console.EmailBackend"),
    ],
)
def test_production_sends_email_by_smtp_and_development_prints_it(debug, backend):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.EMAIL_BACKEND, settings.EMAIL_TIMEOUT)",
        ],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "apps.settings",
            **PRODUCTION,
            "SERVICE": "notifications",
            "DEBUG": debug,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [backend, "10"]


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "apps.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("service", ["auth", "all"])
def test_production_auth_without_a_signing_key_fails_the_deploy_check(service):
    env = {**PRODUCTION, "SERVICE": service, "AUTH_SIGNING_KEY_FILE": ""}
    result = deploy_check(env)
    assert result.returncode != 0
    assert "(auth.E001) the auth service has no signing key" in result.stderr


@pytest.mark.parametrize("service", ["orders", "payments", "all"])
@pytest.mark.parametrize("missing", ["SERVICE_CLIENT_ID", "SERVICE_CLIENT_SECRET"])
def test_production_callers_without_client_credentials_fail_the_deploy_check(service, missing):
    result = deploy_check({**PRODUCTION, "SERVICE": service, missing: ""})
    assert result.returncode != 0
    assert f"(core.E001) {missing} not set: this service calls others with its client credentials" in result.stderr


def test_notifications_calls_nobody_and_needs_no_client_credentials():
    result = deploy_check(
        {**PRODUCTION, "SERVICE": "notifications", "SERVICE_CLIENT_ID": "", "SERVICE_CLIENT_SECRET": ""}
    )
    assert result.returncode == 0, result.stderr


def test_the_migration_job_needs_no_signing_key():
    """`migrate` runs the checks without --deploy: its Job is given the database, not the key."""
    result = run_check({**PRODUCTION, "SERVICE": "auth", "AUTH_SIGNING_KEY_FILE": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("sampler", "argument", "reason"),
    [
        ("parentbased_traceidratio_", "0.1", "(core.E002) OTEL_TRACES_SAMPLER='parentbased_traceidratio_' is not a"),
        ("parentbased_traceidratio", "", "(core.E003) OTEL_TRACES_SAMPLER_ARG='' is not a fraction from 0 to 1"),
        ("traceidratio", "10%", "(core.E003) OTEL_TRACES_SAMPLER_ARG='10%' is not a fraction from 0 to 1"),
        ("parentbased_traceidratio", "1.5", "(core.E003) OTEL_TRACES_SAMPLER_ARG='1.5' is not a fraction"),
        ("parentbased_traceidratio", "nan", "(core.E003) OTEL_TRACES_SAMPLER_ARG='nan' is not a fraction"),
    ],
)
def test_a_sampler_the_sdk_would_replace_with_tracing_everything_fails_the_deploy_check(sampler, argument, reason):
    """OpenTelemetry's SDK logs a warning and records every trace for these: the check stops them."""
    result = deploy_check(
        {**PRODUCTION, "SERVICE": "orders", "OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": argument}
    )
    assert result.returncode != 0
    assert reason in result.stderr


@pytest.mark.parametrize(
    ("sampler", "argument"),
    [("", ""), ("parentbased_traceidratio", "0.1"), ("TraceIdRatio", "0"), ("always_off", ""), ("always_on", "x")],
)
def test_a_sampler_the_sdk_takes_passes_the_deploy_check(sampler, argument):
    result = deploy_check(
        {**PRODUCTION, "SERVICE": "orders", "OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": argument}
    )
    assert result.returncode == 0, result.stderr


def test_the_samplers_checked_are_those_the_sdk_knows():
    from opentelemetry.sdk.trace import sampling

    from apps.core.checks import RATIO_SAMPLERS, TRACE_SAMPLERS

    assert set(TRACE_SAMPLERS) == set(sampling._KNOWN_SAMPLERS)
    assert {name for name in TRACE_SAMPLERS if isinstance(sampling._KNOWN_SAMPLERS[name], type)} == set(RATIO_SAMPLERS)
