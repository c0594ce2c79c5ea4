"""The image installs requirements.txt only: the code a service loads must need nothing else.

The tests run in a virtual environment that also holds the development tools, so an import of one
of those would pass every other test and fail only in the image. Here every service's code is
loaded in a fresh process (the WSGI application, its URL routes and the project's management
commands) in which every module of a distribution that requirements.txt does not install, directly
or as a dependency, is hidden as if it were absent. Optional imports (DRF's of pygments, say) then
take the path they take in the image, and a hard dependency on a development tool fails the load.
"""

import json
import re
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.platform.dockerfile import REPO

LOAD_EVERYTHING = """
import importlib, importlib.abc, json, os, sys

hidden = set(json.loads(os.environ["HIDDEN_MODULES"]))


class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed in the image)", name=name)
        return None


sys.meta_path.insert(0, NotInTheImage())
import apps.wsgi, apps.urls
from django.core.management import get_commands
for name, app in get_commands().items():
    if app.startswith("apps."):
        importlib.import_module(f"{app}.management.commands.{name}")
print("modules:", json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_closure() -> set[str]:
    """The distributions requirements.txt installs: the pins and, recursively, what they require."""
    pending = [
        Requirement(line.split("#")[0].strip())
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _normalise(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for dependency in metadata.requires(requirement.name) or []:
            needed = Requirement(dependency)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(needed)
    return seen


def hidden_modules() -> set[str]:
    """Top-level modules of the distributions in this environment that the image does not install."""
    pinned = pinned_closure()
    return {
        module
        for module, distributions in metadata.packages_distributions().items()
        if not {_normalise(distribution) for distribution in distributions} & pinned
    }


def signing_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def loaded() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LOAD_EVERYTHING],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DJANGO_SETTINGS_MODULE": "apps.settings",
            "SERVICE": "all",
            "SECRET_KEY": "platform-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": "postgres://user:password@database.invalid:5432/all",
            # What a web process checks for as it starts (apps.core.checks): auth's key, a client.
            "AUTH_SIGNING_KEY": signing_key_pem(),
            "SERVICE_CLIENT_ID": "all",
            "SERVICE_CLIENT_SECRET": "platform-test-client-secret-0123456789",
            "HIDDEN_MODULES": json.dumps(sorted(hidden_modules())),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_development_tools_are_hidden_from_the_load():
    assert {"pytest", "kubernetes", "check_jsonschema", "ruamel"} - hidden_modules() == set()


def test_runtime_dependencies_stay_visible():
    assert {"django", "rest_framework", "drf_spectacular", "gunicorn", "psycopg", "yaml"} & hidden_modules() == set()


def test_every_service_loads_with_only_the_runtime_requirements(loaded):
    assert loaded.returncode == 0, loaded.stderr


def test_the_load_reaches_the_web_stack(loaded):
    # Among the process's log lines (loading the application logs what it prepared, apps.core.warmup).
    [listed] = [line for line in loaded.stdout.splitlines() if line.startswith("modules: ")]
    modules = set(json.loads(listed.removeprefix("modules: ")))
    assert {"django", "rest_framework", "drf_spectacular", "django_prometheus", "psycopg"} - modules == set()
