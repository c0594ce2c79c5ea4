"""deploy.changes: the services CD releases for a range of commits."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.changes import backup_image_changed, changed_paths, services_changed

REPO = Path(__file__).resolve().parents[2]
ALL = ["auth", "orders", "payments", "notifications"]


@pytest.mark.parametrize(
    ("paths", "services"),
    [
        (["apps/orders/services.py"], ["orders"]),
        (["apps/payments/migrations/0009_refund.py", "apps/auth/apis.py"], ["auth", "payments"]),
        (["apps/core/api.py"], ALL),
        (["apps/settings.py"], ALL),
        (["requirements.txt"], ALL),
        (["platform/Dockerfile"], ALL),
        (["platform/gunicorn.conf.py"], ALL),
        (["apps/orders/services.py", "manage.py"], ALL),
        # Nothing that runs: no release.
        (["apps/orders/tests/test_apis.py", "apps/core/tests/test_money.py", "apps/tests/test_boundaries.py"], []),
        (["apps/test_settings.py", "README.md", "deploy/base/orders/service.yaml", "deploy/base/orders/hpa.yaml"], []),
        (["deploy/bluegreen/commands.py", ".github/workflows/cd.yml", "platform/compose.yaml"], []),
        (["deploy/base/networkpolicies/allow-gateway.yaml", "deploy/base/gateway/httproute.yaml"], []),
        (["deploy/base/auth/migrate-job.yaml", "deploy/overlays/production/gateway-redirect.yaml"], []),
        # What a release of a service is made of besides its code: its templates, the settings.
        (["deploy/base/orders/app/deployment.yaml"], ["orders"]),
        (
            ["deploy/base/payments/outbox-relay.yaml", "deploy/base/notifications/prune-cronjob.yaml"],
            ["payments", "notifications"],
        ),
        (["deploy/base/config.env"], ALL),
        (["deploy/overlays/production/kustomization.yaml"], ALL),
        ([], []),
    ],
)
def test_the_services_released_are_those_whose_code_or_configuration_changed(paths, services):
    assert services_changed(paths) == services


@pytest.mark.parametrize(
    ("paths", "changed"),
    [
        (["platform/dr/Dockerfile"], True),
        (["apps/orders/services.py", "platform/dr/backup.sh"], True),
        (["platform/dr/restore.sh"], True),
        (["platform/dr/lib.sh"], True),
        # The drills run on the machine, not in the image; the app's image is another one.
        (
            ["platform/dr/drill.py", "platform/dr/pitr.py", "platform/Dockerfile", "tests/platform/test_dr_scripts.py"],
            False,
        ),
        ([], False),
    ],
)
def test_the_backup_image_is_built_when_what_it_is_made_of_changed(paths, changed):
    assert backup_image_changed(paths) is changed


def git(directory: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit(directory: Path, path: str, text: str) -> str:
    file = directory / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    git(directory, "add", path)
    git(directory, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", path)
    return git(directory, "rev-parse", "HEAD")


def test_the_command_diffs_two_real_commits_and_releases_everything_for_an_unknown_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q")
    first = commit(tmp_path, "apps/orders/services.py", "a")
    commit(tmp_path, "apps/orders/tests/test_x.py", "b")
    head = commit(tmp_path, "apps/notifications/apis.py", "c")
    assert changed_paths(first, head) == ["apps/notifications/apis.py", "apps/orders/tests/test_x.py"]
    assert changed_paths("0" * 40, head) is None  # a new branch: GitHub's `before` is all zeros
    assert changed_paths("1" * 40, head) is None  # a commit this clone does not have

    def run(base: str, *flags: str, head: str = head) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deploy.changes", base, head, *flags],
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )

    assert json.loads(run(first).stdout) == ["notifications"]
    unknown = run("0" * 40)
    assert json.loads(unknown.stdout) == ALL
    assert "every service is released" in unknown.stderr
    assert json.loads(run(first, "--backup-image").stdout) is False
    after = commit(tmp_path, "platform/dr/backup.sh", "d")
    assert json.loads(run(head, "--backup-image", head=after).stdout) is True
    assert json.loads(run("0" * 40, "--backup-image").stdout) is True


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==") for line in lines if "==" in line)


def test_the_deploy_requirements_pin_what_the_project_pins():
    project = pins(REPO / "requirements.txt") | pins(REPO / "requirements-dev.txt")
    deploy = pins(REPO / "deploy" / "requirements.txt")
    assert deploy
    assert {name: project.get(name) for name in deploy} == deploy
