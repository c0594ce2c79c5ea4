"""Every rendered object is valid against the Kubernetes OpenAPI schemas (kubernetes-validate, strict),
and the kind overlay renders from the secrets its script makes."""

import shutil
import subprocess

import kubernetes_validate
import pytest

from deploy.tests.rendering import DEPLOY_DIR, KUBERNETES_VERSIONS, OVERLAYS


def _schema_errors(objects: list[dict], version: str) -> list[str]:
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    return errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_the_kubernetes_version(rendered, overlay, version):
    assert _schema_errors(rendered[overlay], version) == []


def test_strict_validation_rejects_an_unknown_field(rendered):
    deployment = next(obj for obj in rendered["kind"] if obj["kind"] == "Deployment")
    misspelled = {**deployment, "spec": {**deployment["spec"], "replica": 2}}

    assert len(_schema_errors([misspelled], KUBERNETES_VERSIONS[0])) == 1


def test_the_kind_secrets_script_writes_what_the_overlay_needs(tmp_path):
    overlay = tmp_path / "deploy" / "overlays" / "kind"
    shutil.copytree(DEPLOY_DIR, tmp_path / "deploy", ignore=shutil.ignore_patterns("__pycache__", "secrets", "tests"))
    subprocess.run([str(overlay / "make-secrets.sh")], check=True, capture_output=True, timeout=60)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True, timeout=60
    ).stdout

    assert rendered.count("\nkind: Secret\n") == 6
