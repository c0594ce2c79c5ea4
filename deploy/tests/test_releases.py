"""deploy.bluegreen.releases: what the manifests say a release is, on the rendered overlays."""

import json
import shutil

import pytest
import yaml

from deploy.bluegreen.decisions import FOLLOWERS, BlueGreenError
from deploy.bluegreen.releases import (
    configuration_id,
    follower_template,
    followers_of,
    manifests_load,
    release_from_manifests,
)
from deploy.tests.rendering import OVERLAYS

IMAGE = "registry.example.com/platform:1.5.0"


def _copy(objects: list[dict]) -> list[dict]:
    return json.loads(json.dumps(objects))


def _object(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["auth", "orders", "payments", "notifications"])
def test_a_release_is_the_colors_template_on_the_image_with_the_settings_it_reads(rendered, overlay, service):
    release = release_from_manifests(rendered[overlay], service=service, color="green", image=IMAGE)
    (app,) = release.template["spec"]["containers"]
    (config_map,) = release.config_maps

    assert (app["image"], release.template["metadata"]["labels"]["color"]) == (IMAGE, "green")
    assert release.template["metadata"]["labels"]["app.kubernetes.io/version"] == "1.5.0"
    assert {"name": "DEPLOY_COLOR", "value": "green"} in app["env"]
    assert config_map["metadata"]["name"].startswith("platform-config-")
    assert config_map["immutable"] is True


def test_a_release_records_its_followers_templates_without_their_images(rendered):
    release = release_from_manifests(rendered["kind"], service="orders", color="green", image=IMAGE)

    assert sorted(release.followers) == [
        "CronJob/orders-payments-settle",
        "CronJob/orders-prune",
        "Deployment/orders-outbox-relay",
    ]
    assert all("image" not in c for t in release.followers.values() for c in t["spec"]["containers"])


def test_the_configuration_id_is_the_same_for_both_colors_and_any_image(rendered):
    blue = release_from_manifests(rendered["kind"], service="orders", color="blue", image="a:1")
    green = release_from_manifests(rendered["kind"], service="orders", color="green", image="b:2")

    assert blue.config == green.config == configuration_id(rendered["kind"], service="orders")


def _changed(objects: list[dict], change) -> list[dict]:
    objects = _copy(objects)
    change(objects)
    return objects


@pytest.mark.parametrize(
    "change",
    [
        # a resource limit of the web pods
        lambda o: _object(o, "Deployment", "orders-blue")["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update(memory="1Gi"),
        # an argument of the relay
        lambda o: _object(o, "Deployment", "orders-outbox-relay")["spec"]["template"]["spec"]["containers"][0][
            "command"
        ].append("--poll-interval=2"),
        # a setting, even in a ConfigMap whose name does not change with it
        lambda o: next(c for c in o if c["metadata"]["name"].startswith("platform-config-"))["data"].update(
            LOG_LEVEL="DEBUG"
        ),
    ],
    ids=["web-template", "follower-template", "setting"],
)
def test_the_configuration_id_changes_with_a_template_or_a_setting(rendered, change):
    assert configuration_id(_changed(rendered["kind"], change), service="orders") != configuration_id(
        rendered["kind"], service="orders"
    )


def test_another_services_change_leaves_the_configuration_id_alone(rendered):
    changed = _changed(
        rendered["kind"],
        lambda o: _object(o, "Deployment", "auth-blue")["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update(memory="1Gi"),
    )

    assert configuration_id(changed, service="orders") == configuration_id(rendered["kind"], service="orders")


def test_a_recorded_follower_gets_the_image_of_the_color_that_goes_live(rendered):
    release = release_from_manifests(rendered["kind"], service="orders", color="green", image=IMAGE)
    relay = _object(rendered["kind"], "Deployment", "orders-outbox-relay")
    (follower,) = [f for f in FOLLOWERS["orders"] if f.name == "orders-outbox-relay"]

    template = follower_template(release.followers, follower, image="x:9")

    assert template["spec"]["containers"][0]["image"] == "x:9"
    assert followers_of(relay, follower) == {
        "Deployment/orders-outbox-relay": release.followers["Deployment/orders-outbox-relay"]
    }


def test_manifests_that_lack_the_services_objects_are_refused(rendered):
    without = [o for o in rendered["kind"] if o["metadata"]["name"] != "orders-prune"]

    with pytest.raises(BlueGreenError, match="the manifests have no CronJob orders-prune"):
        release_from_manifests(without, service="orders", color="green", image=IMAGE)


def test_manifests_load_reads_a_rendered_file_and_renders_an_overlay_folder(rendered, tmp_path):
    rendered_file = tmp_path / "rendered.yaml"
    rendered_file.write_text(yaml.safe_dump_all(rendered["kind"]))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")
    (overlay / "kustomization.yaml").write_text("resources: [configmap.yaml]\n")

    assert manifests_load(rendered_file) == rendered["kind"]
    assert shutil.which("kubectl"), "kubectl renders overlay folders"
    assert manifests_load(overlay) == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    ]


def test_manifests_load_says_what_is_wrong_with_a_path(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources: [missing.yaml]\n")

    with pytest.raises(BlueGreenError, match="does not exist"):
        manifests_load(tmp_path / "nowhere")
    with pytest.raises(BlueGreenError, match=r"kubectl kustomize .* failed"):
        manifests_load(broken)
