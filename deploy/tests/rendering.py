"""Renders the kustomize overlays the way an operator would, with the example secrets in place.

The real secrets live in `secrets/` folders that git ignores, so the tree is copied to a temporary
folder where each overlay gets its `secrets.example/` copied to `secrets/` and a placeholder signing key.
"""

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY_DIR = Path(__file__).resolve().parent.parent
OVERLAYS = ("kind", "local", "production")
# The oldest Kubernetes minor version the manifests must be valid for, and the newest we checked.
KUBERNETES_VERSIONS = ("1.33", "1.35")


def render_overlay(*, overlay: str, workdir: Path) -> list[dict]:
    """Every object `kubectl kustomize deploy/overlays/<overlay>` prints, as dicts."""
    tree = workdir / "deploy"
    if not tree.exists():
        shutil.copytree(DEPLOY_DIR, tree, ignore=shutil.ignore_patterns("__pycache__", "secrets", "tests"))
    overlay_dir = tree / "overlays" / overlay
    # Every overlay's, since one overlay may build on another's (local on kind).
    for example in (tree / "overlays").glob("*/secrets.example"):
        secrets = example.parent / "secrets"
        if not secrets.exists():
            shutil.copytree(example, secrets)
            (secrets / "auth-signing-key.pem").write_text("placeholder, not a key\n")
    output = subprocess.run(
        ["kubectl", "kustomize", str(overlay_dir)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]
