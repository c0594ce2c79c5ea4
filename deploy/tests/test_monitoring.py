"""deploy/monitoring: the Prometheus and kube-state-metrics of a cluster that has none, as kubectl
reads them, and the cluster's own rules as promtool reads them. Prometheus itself loads the
configuration on the local cluster (tests/cluster/test_platform.py: every web pod scraped with its
labels, kube-state-metrics' names); Debian's promtool here knows no Kubernetes service discovery."""

import re
import subprocess

import pytest
import yaml

from deploy.tests.rendering import DEPLOY_DIR, KUBERNETES_VERSIONS
from deploy.tests.test_schemas import _schema_errors
from tests.platform.test_observability_config import promtool

VARIANTS = ("base", "local")
RULES = DEPLOY_DIR / "monitoring" / "rules"
RULE_TESTS = DEPLOY_DIR / "monitoring" / "tests"
SCRAPE_CONFIG = yaml.safe_load((DEPLOY_DIR / "monitoring" / "base" / "prometheus.yml").read_text())


def _object(objects: list[dict], kind: str, name: str, namespace: str = "monitoring") -> dict:
    (found,) = [
        obj
        for obj in objects
        if obj["kind"] == kind and obj["metadata"]["name"] == name and obj["metadata"].get("namespace") == namespace
    ]
    return found


def _container(objects: list[dict], name: str) -> dict:
    (container,) = _object(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


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


def test_the_images_are_the_official_ones_or_the_local_stand_ins(monitoring):
    images = {
        variant: {name: _container(objects, name)["image"] for name in ("prometheus", "kube-state-metrics", "jaeger")}
        for variant, objects in monitoring.items()
    }

    assert images == {
        "base": {
            "prometheus": "prom/prometheus:v3.5.0",
            "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.16.0",
            "jaeger": "jaegertracing/jaeger:2.13.0",
        },
        "local": {
            "prometheus": "platform-local/prometheus:v3.5.0",
            "kube-state-metrics": "platform-local/kube-state-metrics:v2.16.0",
            "jaeger": "platform-local/jaeger:2.13.0",
        },
    }


def test_the_scrape_job_labels_what_the_gate_and_the_dashboards_select_on():
    job = next(job for job in SCRAPE_CONFIG["scrape_configs"] if job["job_name"] == "platform")
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
    role = _object(monitoring["base"], "Role", "prometheus-discovery", namespace="platform")

    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def test_prometheus_reads_the_platform_rules_from_their_configmap_where_the_config_looks(monitoring):
    config = SCRAPE_CONFIG
    pod = _object(monitoring["base"], "Deployment", "prometheus")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    assert config["rule_files"] == [f"{mounts['rules']}/*.yml"]
    # Optional: a Prometheus without the rules still scrapes for the blue/green gate and its watch.
    assert volumes["rules"]["configMap"] == {"name": "prometheus-rules", "optional": True}


def test_the_clusters_make_the_rules_configmap_from_the_two_rules_folders():
    """deploy/platform-steps.sh, which the local cluster's platform.sh and kind's up.sh share."""
    script = (DEPLOY_DIR / "platform-steps.sh").read_text()
    assert (
        'kubectl -n monitoring create configmap prometheus-rules --from-file="$REPO/platform/prometheus/rules" \\\n'
        '\t\t--from-file="$REPO/deploy/monitoring/rules"'
    ) in script
    # One ConfigMap, one folder in the pod: no file name may be in both.
    platform_rules = {path.name for path in (DEPLOY_DIR.parent / "platform" / "prometheus" / "rules").glob("*")}
    assert platform_rules & {path.name for path in RULES.glob("*")} == set()


def test_promtool_accepts_the_cluster_rules_and_they_pass_their_unit_tests():
    checked = promtool("check", "rules", *map(str, sorted(RULES.glob("*.yml"))))
    tested = promtool("test", "rules", *map(str, sorted(RULE_TESTS.glob("*.yml"))))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert sorted(path.stem for path in RULE_TESTS.glob("*.yml")) == [
        f"{path.stem}_test" for path in sorted(RULES.glob("*.yml"))
    ]


def test_kube_state_metrics_reads_only_the_platforms_jobs_cronjobs_pods_and_autoscalers(monitoring):
    objects = monitoring["base"]
    role = _object(objects, "Role", "kube-state-metrics", namespace="platform")
    binding = _object(objects, "RoleBinding", "kube-state-metrics", namespace="platform")
    arguments = dict(
        argument.removeprefix("--").split("=", 1)
        for argument in _container(objects, "kube-state-metrics")["args"]
        if "=" in argument
    )

    assert {(rule["apiGroups"][0], resource) for rule in role["rules"] for resource in rule["resources"]} == {
        ("", "pods"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("autoscaling", "horizontalpodautoscalers"),
    }
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"list", "watch"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kube-state-metrics", "namespace": "monitoring"}]
    assert not [obj for obj in objects if obj["kind"].startswith("Cluster")]
    assert arguments["namespaces"] == "platform"
    assert sorted(arguments["resources"].split(",")) == ["cronjobs", "horizontalpodautoscalers", "jobs", "pods"]


def test_every_object_label_the_cluster_rules_join_on_is_in_kube_state_metrics_allowlist(monitoring):
    """kube-state-metrics exports an object's labels (as label_<name>) only where they are allowed."""
    arguments = _container(monitoring["base"], "kube-state-metrics")["args"]
    (allowlist,) = [
        argument.split("=", 1)[1] for argument in arguments if argument.startswith("--metric-labels-allowlist=")
    ]
    allowed = {
        (resource, "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label))
        for resource, labels in re.findall(r"(\w+)=\[([^\]]*)\]", allowlist)
        for label in labels.split(",")
    }
    metric_resource = {"kube_pod_labels": "pods", "kube_job_labels": "jobs", "kube_cronjob_labels": "cronjobs"}
    joined = set()
    for group in yaml.safe_load((RULES / "kubernetes.yml").read_text())["groups"]:
        for rule in group["rules"]:
            for metric, matchers in re.findall(r"(kube_\w+_labels)(\{[^}]*\})?", rule["expr"]):
                joined |= {(metric_resource[metric], name) for name in re.findall(r"\b(label_\w+)", matchers)}
            for metric in re.findall(r"kube_\w+_labels", rule["expr"]):
                group_left = re.findall(r"group_left \(([^)]*)\)\s*" + metric, rule["expr"])
                joined |= {
                    (metric_resource[metric], name.strip())
                    for names in group_left
                    for name in names.split(",")
                    if name.strip()
                }

    assert {  # the parse works
        ("pods", "label_color"),
        ("jobs", "label_app_kubernetes_io_component"),
        ("cronjobs", "label_app_kubernetes_io_component"),
    } <= joined
    assert joined - allowed == set()


def test_prometheus_scrapes_kube_state_metrics_with_its_own_object_labels(monitoring):
    job = next(job for job in SCRAPE_CONFIG["scrape_configs"] if job["job_name"] == "kube-state-metrics")
    service = _object(monitoring["base"], "Service", "kube-state-metrics")
    (port,) = service["spec"]["ports"]

    assert job["honor_labels"] is True  # `namespace` and `pod` are the objects', not the target's
    assert job["static_configs"] == [{"targets": [f"kube-state-metrics.monitoring.svc:{port['port']}"]}]
    assert port["targetPort"] == "http-metrics"


def test_the_platform_sends_its_spans_to_the_jaeger_service_its_network_policy_admits(monitoring):
    platform = DEPLOY_DIR / "base"
    lines = (platform / "config.env").read_text().splitlines()
    config = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    policy = yaml.safe_load((platform / "networkpolicies" / "allow-traces.yaml").read_text())
    service = _object(monitoring["base"], "Service", "jaeger")
    deployment = _object(monitoring["base"], "Deployment", "jaeger")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {port["name"]: port for port in _container(monitoring["base"], "jaeger")["ports"]}
    (otlp,) = [port for port in service["spec"]["ports"] if port["name"] == "otlp-http"]
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]

    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://jaeger.monitoring.svc.cluster.local:{otlp['port']}"
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": ports[otlp["targetPort"]]["containerPort"]}]
    # Jaeger's built-in configuration listens on localhost unless told otherwise.
    env = {item["name"]: item["value"] for item in _container(monitoring["base"], "jaeger")["env"]}
    assert env["JAEGER_LISTEN_HOST"] == "0.0.0.0"  # noqa: S104 (the pod's address: the Service reaches it there)
