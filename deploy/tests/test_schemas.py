"""Every rendered object is valid against the Kubernetes OpenAPI schemas (kubernetes-validate, strict),
or, for the Gateway API and Envoy Gateway kinds, against their CustomResourceDefinitions' schemas
(strict too); and the kind overlay renders from the secrets its script makes."""

import shutil
import subprocess

import kubernetes_validate
import pytest

from deploy.tests import custom_resources
from deploy.tests.rendering import DEPLOY_DIR, KUBERNETES_VERSIONS, OVERLAYS


def _schema_errors(objects: list[dict], version: str) -> list[str]:
    errors = []
    for obj in objects:
        if custom_resources.is_custom(obj):
            errors += [f"{obj['kind']}/{obj['metadata']['name']}: {e}" for e in custom_resources.errors(obj)]
            continue
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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_objects_are_checked_against_their_definitions(rendered, overlay):
    custom = sorted(
        (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        for obj in rendered[overlay]
        if custom_resources.is_custom(obj)
    )
    expected = [
        ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy", "platform-api"),
        ("gateway.networking.k8s.io/v1", "Gateway", "platform"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "platform-api"),
    ]
    if overlay == "production":
        expected.append(("gateway.networking.k8s.io/v1", "HTTPRoute", "platform-api-redirect"))

    assert custom == expected


def test_strict_validation_of_a_custom_kind_rejects_an_unknown_field(rendered):
    route = next(obj for obj in rendered["kind"] if obj["kind"] == "HTTPRoute")
    misspelled = {**route, "spec": {**route["spec"], "rule": []}}

    assert len(_schema_errors([misspelled], KUBERNETES_VERSIONS[0])) == 1


def test_a_custom_kind_outside_the_definitions_is_an_error():
    unknown = {"apiVersion": "gateway.networking.k8s.io/v9", "kind": "Gateway", "metadata": {"name": "x"}}

    assert custom_resources.is_custom(unknown) is False
    assert _schema_errors([unknown], KUBERNETES_VERSIONS[0]) != []


def test_the_kind_secrets_script_writes_what_the_overlay_needs(tmp_path):
    overlay = tmp_path / "deploy" / "overlays" / "kind"
    shutil.copytree(DEPLOY_DIR, tmp_path / "deploy", ignore=shutil.ignore_patterns("__pycache__", "secrets", "tests"))
    subprocess.run([str(overlay / "make-secrets.sh")], check=True, capture_output=True, timeout=60)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True, timeout=60
    ).stdout

    assert rendered.count("\nkind: Secret\n") == 6
