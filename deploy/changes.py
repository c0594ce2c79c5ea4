"""Which services a range of commits changes, for CD: `python -m deploy.changes BASE HEAD`.

Prints a JSON list of services, the ones whose release differs between the two commits: the code in
their image, or the configuration production gives them (their pod templates and settings, which
`deploy --manifests` puts on the idle color);
with `--backup-image`, `true` or `false`: whether the backup image (platform/dr/Dockerfile and the
scripts it copies) differs, so that CD builds it and moves the backup CronJobs to it.
What counts is what enters the image (platform/Dockerfile and .dockerignore): a service's own app
changes that service; everything else the image carries (the kernel apps/core, the project's
settings and URLs, the pinned requirements, gunicorn's configuration, the Dockerfile itself) changes
all four, because every service runs it. In the manifests, a service's own templates (its colors,
relay, worker, schedules under deploy/base/<service>/) change that service; the shared settings
(deploy/base/config.env) and the production overlay's own kustomization (which patches them) change
all four. Tests, documents, the other manifests (Services, autoscalers, policies, the gateway) and the
deploy tooling change nothing a service runs and release nothing.

A BASE that is unknown (the all-zero SHA of a new branch, a commit the shallow clone does not have,
a force-push that rewrote it) means the difference cannot be known, and then all four are released.
"""

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from deploy.bluegreen.decisions import SERVICES

# Paths in the image that are not one service's own code: a change there changes every service.
SHARED_IMAGE_PATHS = (
    "manage.py",
    "requirements.txt",
    ".dockerignore",
    "platform/Dockerfile",
    "platform/gunicorn.conf.py",
)


# What the backup image is made of: the Dockerfile (its BASE, the database's image, included) and what it copies.
BACKUP_IMAGE_PATHS = ("platform/dr/Dockerfile", "platform/dr/backup.sh", "platform/dr/restore.sh", "platform/dr/lib.sh")


# Manifests that configure every service's release: the shared settings, and the production overlay
# that patches them and the pod templates.
SHARED_RELEASE_MANIFESTS = (
    "deploy/base/config.env",
    "deploy/base/kustomization.yaml",
    "deploy/overlays/production/kustomization.yaml",
)
# Files of deploy/base/<service>/ that are not part of its release: they configure no pod the tool
# deploys (the first apply's Jobs, the Service, the autoscaler, the identity).
NOT_RELEASED = {"service.yaml", "hpa.yaml", "serviceaccount.yaml", "migrate-job.yaml", "service-clients-job.yaml"}


def released_manifest_services(path: PurePosixPath) -> list[str]:
    """The services whose release configuration a manifest file is part of (none for most)."""
    if path.as_posix() in SHARED_RELEASE_MANIFESTS:
        return list(SERVICES)
    parts = path.parts
    if parts[:2] == ("deploy", "base") and len(parts) > 3 and parts[2] in SERVICES and parts[-1] not in NOT_RELEASED:
        return [parts[2]]
    return []


def in_image(path: PurePosixPath) -> bool:
    """Whether the file ships in the image, as .dockerignore admits it (tests and bytecode never do)."""
    if path.as_posix() in SHARED_IMAGE_PATHS:
        return True
    if path.parts[:1] != ("apps",):
        return False
    return "tests" not in path.parts and path.name != "test_settings.py" and path.suffix not in {".pyc", ".pyo"}


def services_changed(paths: Iterable[str]) -> list[str]:
    """The services to release for these changed paths, in the platform's order."""
    changed: set[str] = set()
    for name in paths:
        path = PurePosixPath(name)
        changed.update(released_manifest_services(path))
        if not in_image(path):
            continue
        service = path.parts[1] if len(path.parts) > 2 and path.parts[0] == "apps" else None
        if service in SERVICES:
            changed.add(service)
        else:
            return list(SERVICES)
    return [service for service in SERVICES if service in changed]


def backup_image_changed(paths: Iterable[str]) -> bool:
    """Whether these changed paths change the backup image."""
    return any(path in BACKUP_IMAGE_PATHS for path in paths)


def git(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """git in the working directory's repository; the arguments are commits named by CI, never a shell."""
    return subprocess.run(["git", *arguments], capture_output=True, text=True, check=check)  # noqa: S603, S607


def changed_paths(base: str, head: str) -> list[str] | None:
    """The paths that differ between the commits (renames count twice), or None when BASE is unknown."""
    if set(base) <= {"0"} or git("cat-file", "-e", f"{base}^{{commit}}", check=False).returncode != 0:
        return None
    names = git("diff", "--name-only", "--no-renames", "-z", base, head).stdout.split("\0")
    return [name for name in names if name]


def main(argv: Sequence[str]) -> int:
    backup = "--backup-image" in argv
    arguments = [argument for argument in argv if argument != "--backup-image"]
    if len(arguments) != 2:
        sys.stderr.write("usage: python -m deploy.changes BASE HEAD [--backup-image]\n")
        return 2
    base, head = arguments
    paths = changed_paths(base, head)
    if paths is None:
        what = "the backup image is built" if backup else "every service is released"
        sys.stderr.write(f"{base} is not a known commit: {what}\n")
        answer = True if backup else list(SERVICES)
    else:
        answer = backup_image_changed(paths) if backup else services_changed(paths)
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
