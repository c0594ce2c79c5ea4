"""Validation of custom resources (the Gateway, its routes, Envoy Gateway's policies) against the
schemas of their CustomResourceDefinitions, as deploy/gateway/crds.sh prints them.

kubernetes-validate knows only the built-in kinds. A CRD's `openAPIV3Schema` is what the API server
checks a custom object against, apart from its CEL rules (`x-kubernetes-validations`, run by the
local cluster's API server). Strict, as for the built-in kinds: a field the schema does not name is an
error here, where the API server would silently drop it.
"""

from __future__ import annotations

import copy
import functools
import subprocess

import jsonschema
import yaml

from deploy.tests.rendering import DEPLOY_DIR

CRDS_SCRIPT = DEPLOY_DIR / "gateway" / "crds.sh"


@functools.cache
def definitions() -> tuple[dict, ...]:
    """Every CustomResourceDefinition crds.sh prints."""
    output = subprocess.run([str(CRDS_SCRIPT)], check=True, capture_output=True, text=True, timeout=600).stdout
    return tuple(
        document
        for document in yaml.safe_load_all(output)
        if document and document.get("kind") == "CustomResourceDefinition"
    )


def _strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever it lists its fields and keeps no others."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    # Every object has metadata; its fields are the API server's, not the CRD's.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@functools.cache
def _validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    validators = {}
    for crd in definitions():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def is_custom(obj: dict) -> bool:
    """Whether a CRD of crds.sh defines the object's kind."""
    return (obj["apiVersion"], obj["kind"]) in _validators()


def groups() -> set[str]:
    return {crd["spec"]["group"] for crd in definitions()}


def errors(obj: dict) -> list[str]:
    """What is wrong with a custom object, by the schema of its CRD (empty when it is valid)."""
    validator = _validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no CustomResourceDefinition serves {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
