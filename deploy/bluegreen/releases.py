"""A release as the manifests describe it: an image, plus the configuration the service runs it with
(its web pod template, its relays' and schedules' templates, the settings they read).

`deploy --manifests` puts a release on the idle color; promote and rollback move the relays and
schedules to the release of the color that goes live. The configuration is named by a hash of those
templates without their images, the same for both colors: two colors with the same image and the
same configuration id run the same release. Settings are part of it through their ConfigMap's name,
which carries a hash of the content (platform-config-<hash>). Secrets are not: their names are fixed.

Plain functions over rendered objects (what `kubectl kustomize` prints); `commands` does the rest.
"""

import copy
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy.bluegreen.decisions import (
    APP_CONTAINER,
    COLORS,
    FOLLOWERS,
    FOLLOWERS_ANNOTATION,
    VERSION_LABEL,
    BlueGreenError,
    Follower,
    deployment_name,
    version_label,
)


@dataclass(frozen=True)
class Release:
    """What `deploy --manifests` writes: the color's pod template (image set), the relays' and
    schedules' templates (by `Kind/name`, image left for the switch to set), the ConfigMaps they read."""

    image: str
    config: str
    template: dict
    followers: dict[str, dict]
    config_maps: tuple[dict, ...]


def manifests_load(path: str | Path) -> list[dict]:
    """The objects of a kustomization folder (`kubectl kustomize`) or of a file of rendered YAML."""
    path = Path(path)
    if path.is_dir():
        try:
            rendered = subprocess.run(  # noqa: S603 - the operator's own overlay, rendered as they would
                ["kubectl", "kustomize", str(path)],  # noqa: S607 - kubectl from PATH, as the operator runs it
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        except FileNotFoundError:
            raise BlueGreenError(
                f"--manifests {path} is a kustomization, and rendering it needs kubectl",
                next_step="install kubectl, or render it first (kubectl kustomize DIR > FILE) and pass the file",
            ) from None
        except subprocess.CalledProcessError as error:
            raise BlueGreenError(
                f"kubectl kustomize {path} failed: {error.stderr.strip()}",
                next_step="fix the overlay (kubectl kustomize must render it), then run the command again",
            ) from None
    elif path.is_file():
        rendered = path.read_text()
    else:
        raise BlueGreenError(f"--manifests {path} does not exist", next_step="name an overlay folder or a YAML file")
    return [document for document in yaml.safe_load_all(rendered) if isinstance(document, dict)]


def _find(objects: list[dict], *, kind: str, name: str) -> dict:
    for obj in objects:
        if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    raise BlueGreenError(
        f"the manifests have no {kind} {name}",
        next_step="pass the overlay the platform was applied from (deploy/overlays/<env>)",
    )


def pod_template(obj: dict) -> dict:
    """The pod template of a Deployment or a CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def _follower_key(follower: Follower) -> str:
    return f"{follower.kind}/{follower.name}"


def _with_image(template: dict, *, container: str, image: str | None) -> dict:
    """A copy of the template with the named container on `image` (None: no image at all, for ids)."""
    template = copy.deepcopy(template)
    for item in template.get("spec", {}).get("containers", []):
        if item.get("name") == container:
            if image is None:
                item.pop("image", None)
            else:
                item["image"] = image
    return template


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def configuration_id(objects: list[dict], *, service: str) -> str:
    """The id of the service's configuration in these manifests: a hash of its web pod template (the
    first color's: both are made from one, and differ by their color alone), its followers'
    templates, images left out, and the data of the ConfigMaps they read (so that a ConfigMap with
    a fixed name counts by its content too)."""
    web = pod_template(_find(objects, kind="Deployment", name=deployment_name(service=service, color=COLORS[0])))
    parts = {"web": _with_image(web, container=APP_CONTAINER, image=None)}
    for follower in FOLLOWERS.get(service, ()):
        template = pod_template(_find(objects, kind=follower.kind, name=follower.name))
        parts[_follower_key(follower)] = _with_image(template, container=follower.container, image=None)
    names = set().union(*(_config_map_names(template) for template in parts.values()))
    for obj in objects:
        if obj.get("kind") == "ConfigMap" and obj.get("metadata", {}).get("name") in names:
            parts[f"ConfigMap/{obj['metadata']['name']}"] = {
                "data": obj.get("data", {}),
                "binaryData": obj.get("binaryData", {}),
            }
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:12]


def _config_map_names(template: dict) -> set[str]:
    """The ConfigMaps a pod template reads: envFrom, env valueFrom, volumes."""
    spec = template.get("spec", {})
    names = set()
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        names |= {e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e}
        names |= {
            e["valueFrom"]["configMapKeyRef"]["name"]
            for e in container.get("env", [])
            if "configMapKeyRef" in e.get("valueFrom", {})
        }
    names |= {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    return names


def release_from_manifests(objects: list[dict], *, service: str, color: str, image: str) -> Release:
    """The release of `image` with the manifests' configuration, for `color` of `service`."""
    deployment = _find(objects, kind="Deployment", name=deployment_name(service=service, color=color))
    template = _with_image(pod_template(deployment), container=APP_CONTAINER, image=image)
    template.setdefault("metadata", {}).setdefault("labels", {})[VERSION_LABEL] = version_label(image)
    followers = {}
    for follower in FOLLOWERS.get(service, ()):
        followed = pod_template(_find(objects, kind=follower.kind, name=follower.name))
        followers[_follower_key(follower)] = _with_image(followed, container=follower.container, image=None)
    names = _config_map_names(template).union(*(_config_map_names(t) for t in followers.values()))
    config_maps = tuple(
        obj for obj in objects if obj.get("kind") == "ConfigMap" and obj.get("metadata", {}).get("name") in names
    )
    return Release(
        image=image,
        config=configuration_id(objects, service=service),
        template=template,
        followers=followers,
        config_maps=config_maps,
    )


def followers_of(obj: dict, follower: Follower) -> dict[str, dict]:
    """A follower's template as it runs now (image left out, the API server's defaults in), keyed as
    a release records it."""
    template = _with_image(pod_template(obj), container=follower.container, image=None)
    return {_follower_key(follower): template}


def follower_template(recorded: dict[str, dict], follower: Follower, *, image: str) -> dict | None:
    """The pod template a follower gets when a color whose release recorded it goes live, on `image`;
    None when that color was deployed without manifests (then only the image moves)."""
    template = recorded.get(_follower_key(follower))
    return None if template is None else _with_image(template, container=follower.container, image=image)


def recorded_followers(deployment: dict) -> dict[str, dict]:
    """The followers' templates a color's release recorded (empty when deployed without manifests)."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    raw = annotations.get(FOLLOWERS_ANNOTATION)
    return json.loads(raw) if raw else {}
