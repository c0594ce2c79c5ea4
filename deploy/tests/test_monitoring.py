"""deploy/monitoring: the Prometheus of a cluster that has none, as kubectl reads it. Prometheus
itself loads the configuration on the local cluster (tests/cluster/test_platform.py: every web pod
scraped with its labels); Debian's promtool here knows no Kubernetes service discovery."""

import subprocess

import pytest
import yaml

from deploy.tests.rendering import DEPLOY_DIR, KUBERNETES_VERSIONS
from deploy.tests.test_schemas import _schema_errors

VARIANTS = ("base", "local")


@pytest.fixture(scope="module")
def monitoring() -> dict[str, list[dict]]:
    rendered = {}
    for variant in VARIANTS:
        output = subprocess.run(
            ["kubectl", "kustomize", str(DEPLOY_DIR / "monitoring" / variant)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        rendered[variant] = [document for document in yaml.safe_load_all(output) if document]
    return rendered


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_for_the_kubernetes_version(monitoring, variant, version):
    assert _schema_errors(monitoring[variant], version) == []


def test_the_image_is_the_official_one_or_the_local_stand_in(monitoring):
    images = {
        variant: next(obj for obj in objects if obj["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
        for variant, objects in monitoring.items()
    }

    assert images == {"base": "prom/prometheus:v3.5.0", "local": "platform-local/prometheus:v3.5.0"}


def test_the_scrape_job_labels_what_the_gate_and_the_dashboards_select_on():
    config = yaml.safe_load((DEPLOY_DIR / "monitoring" / "base" / "prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "platform")
    labels = {
        rule["source_labels"][0]: rule["target_label"] for rule in job["relabel_configs"] if "target_label" in rule
    }

    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["platform"]}}]
    assert labels == {
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "__metrics_path__",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "service",
        "__meta_kubernetes_pod_label_color": "color",
        "__meta_kubernetes_pod_label_app_kubernetes_io_version": "version",
        "__meta_kubernetes_pod_name": "pod",
        "__meta_kubernetes_pod_label_app_kubernetes_io_component": "component",
    }


def test_prometheus_may_list_the_platforms_pods_and_nothing_else(monitoring):
    role = next(
        obj for obj in monitoring["base"] if obj["kind"] == "Role" and obj["metadata"]["namespace"] == "platform"
    )

    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def test_prometheus_reads_the_platform_rules_from_their_configmap_where_the_config_looks(monitoring):
    config = yaml.safe_load((DEPLOY_DIR / "monitoring" / "base" / "prometheus.yml").read_text())
    deployment = next(obj for obj in monitoring["base"] if obj["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    assert config["rule_files"] == [f"{mounts['rules']}/*.yml"]
    # Optional: a Prometheus without the rules still scrapes for the blue/green gate and its watch.
    assert volumes["rules"]["configMap"] == {"name": "prometheus-rules", "optional": True}


def test_the_local_cluster_makes_the_rules_configmap_from_the_one_rules_folder():
    script = (DEPLOY_DIR / "cluster" / "platform.sh").read_text()
    assert (
        'kubectl -n monitoring create configmap prometheus-rules --from-file="$REPO/platform/prometheus/rules"'
        in script
    )
