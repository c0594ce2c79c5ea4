"""platform/Dockerfile and .dockerignore: lint-clean, and built the way the platform's contracts require.

These tests read the Dockerfile and so run everywhere, in seconds; tests/containers builds the image
for real and runs it, and test_image_process.py runs its command as a process without an engine.
"""

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from apps.services import CHOICES
from tests.platform import dockerfile
from tests.platform.dockerfile import DOCKERFILE, REPO

HADOLINT = Path(sys.executable).parent / "hadolint"
STAGES = dockerfile.stages()
BUILDER, RUNTIME = STAGES


def test_hadolint_reports_nothing():
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_no_hadolint_rule_is_switched_off_inline():
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def test_two_stages_builder_then_runtime():
    assert [stage.name for stage in STAGES] == ["builder", "runtime"]


def test_both_stages_are_built_on_the_base_image_argument():
    assert {stage.base for stage in STAGES} == {"${BASE_IMAGE}"}


def test_the_default_base_is_the_official_python_image_pinned_by_digest():
    assert re.fullmatch(r"python:3\.11\.7-slim-bookworm@sha256:[0-9a-f]{64}", dockerfile.global_args()["BASE_IMAGE"])


def test_the_default_base_carries_the_python_the_tests_run_on():
    tag = dockerfile.global_args()["BASE_IMAGE"].split("@")[0]
    assert tag.split(":")[1].split("-")[0] == platform.python_version()


def test_runtime_takes_only_the_venv_from_the_builder():
    copies_from_builder = [copy.arguments for copy in RUNTIME.all("COPY") if copy.arguments.startswith("--from")]
    assert copies_from_builder == ["--from=builder /opt/venv /opt/venv"]


def test_builder_installs_the_pinned_requirements_from_wheels():
    (run,) = BUILDER.all("RUN")
    assert '--only-binary=:all: "$@" -r /tmp/requirements.txt' in run.arguments


def test_builder_installs_only_from_the_wheelhouse_when_it_holds_wheels():
    (run,) = BUILDER.all("RUN")
    assert run.arguments.startswith(
        "if ls /tmp/wheelhouse/*.whl >/dev/null 2>&1; then set -- --no-index --find-links=/tmp/wheelhouse; fi"
    )


def test_the_wheelhouse_is_empty_in_git():
    tracked = subprocess.run(
        ["git", "ls-files", "platform/wheelhouse"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert tracked.stdout.split() == ["platform/wheelhouse/.gitignore", "platform/wheelhouse/README.md"]


def test_runtime_user_is_numeric_and_non_root():
    assert [user.arguments for user in RUNTIME.all("USER")] == ["10001:10001"]


def test_user_is_set_before_the_command():
    keywords = [instruction.keyword for instruction in RUNTIME.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


def test_command_is_gunicorn_with_the_platform_config_in_exec_form():
    assert RUNTIME.exec_form("CMD") == ["gunicorn", "-c", "platform/gunicorn.conf.py"]


def test_no_entrypoint_wraps_the_command():
    assert RUNTIME.exec_form("ENTRYPOINT") is None


def test_runtime_environment():
    assert RUNTIME.env() == {
        "PATH": "/opt/venv/bin:$PATH",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PORT": "8000",
        "APP_VERSION": "dev",
        "GIT_SHA": "unknown",
    }


def test_service_is_not_baked_into_the_image():
    baked = set(RUNTIME.env()) | set(RUNTIME.args()) | set(BUILDER.env()) | set(BUILDER.args())
    assert "SERVICE" not in baked


def test_port_exposed_is_the_port_gunicorn_binds():
    assert [expose.arguments for expose in RUNTIME.all("EXPOSE")] == [RUNTIME.env()["PORT"]]


def _collectstatic_step() -> tuple[dict[str, str], list[str]]:
    (run,) = [run for run in RUNTIME.all("RUN") if "collectstatic" in run.arguments]
    return dockerfile.command_with_assignments(run.arguments.split("&&")[0])


def test_collectstatic_runs_at_build_time_with_throwaway_settings():
    assignments, argv = _collectstatic_step()
    assert (assignments, argv) == (
        {"SECRET_KEY": "build-only-not-a-secret", "ALLOWED_HOSTS": "build", "SERVICE": "all", "DATA_DIR": "/tmp"},  # noqa: S108
        ["python", "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
    )


def test_build_time_settings_do_not_reach_the_runtime_environment():
    assignments, _ = _collectstatic_step()
    assert set(assignments) & set(RUNTIME.env()) == set()


def test_build_time_service_is_a_valid_service():
    assignments, _ = _collectstatic_step()
    assert assignments["SERVICE"] in CHOICES


def test_oci_labels_come_from_build_arguments():
    labels = RUNTIME.labels()
    assert [labels[f"org.opencontainers.image.{name}"] for name in ("source", "version", "revision")] == [
        "${SOURCE_URL}",
        "${APP_VERSION}",
        "${GIT_SHA}",
    ]


def test_label_build_arguments_are_declared():
    assert set(RUNTIME.args()) == {"APP_VERSION", "GIT_SHA", "SOURCE_URL"}


# --- the build context ----------------------------------------------------------------------------


def _copied_sources() -> list[str]:
    sources = []
    for stage in STAGES:
        for copy in stage.all("COPY"):
            if copy.arguments.startswith("--from"):
                continue
            *paths, _destination = copy.arguments.split()
            sources.extend(paths)
    return sources


def test_the_dockerfile_copies_these_paths():
    assert _copied_sources() == [
        "requirements.txt",
        "platform/wheelhouse/",
        "manage.py",
        "apps",
        "platform/gunicorn.conf.py",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt",
        "manage.py",
        "apps/settings.py",
        "apps/wsgi.py",
        "apps/core/probes.py",
        "apps/auth/migrations/0001_initial.py",
        "platform/gunicorn.conf.py",
    ],
)
def test_the_context_holds_what_the_image_needs(path):
    assert (REPO / path).exists() and dockerfile.in_build_context(path)


@pytest.mark.parametrize(
    "path",
    [
        "data/local.env",
        "data/auth-signing-key.pem",
        "data/auth.sqlite3",
        ".env",
        "platform/.env",
        ".venv/bin/python",
        ".git/config",
        "staticfiles/admin/css/base.css",
        "apps/test_settings.py",
        "apps/tests/test_settings_and_services.py",
        "apps/core/tests/test_probes.py",
        "apps/core/__pycache__/probes.cpython-311.pyc",
        "tests/platform/test_dockerfile.py",
        "deploy/kustomization.yaml",
        "platform/compose.yaml",
        "requirements-dev.txt",
    ],
)
def test_the_context_leaves_out_secrets_state_and_tests(path):
    assert not dockerfile.in_build_context(path)
