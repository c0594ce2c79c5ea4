"""The cluster's own alerts (deploy/monitoring/rules, on kube-state-metrics' series) against real
failures: a migration Job that gives up and a container killed for memory, made here in namespace
`platform`, fire MigrationJobFailed and ContainerOOMKilled with the `service` and `color` their
objects carry. Every kube-state-metrics name the rules use is then in the cluster's scrape, and its
autoscaler series say what the manifests do. (The restart and autoscaler-at-maximum alerts need
minutes of a failing pod or of full load: their promtool tests in deploy/monitoring/tests prove them.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.cluster.kube import NAMESPACE, SERVICES, wait_until
from tests.cluster.test_platform import prometheus_query
from tests.platform import observability

# Exists for a CronJob once one of its Jobs succeeded (tests/cluster/test_backups.py).
LAST_SUCCESS = "kube_cronjob_status_last_successful_time"
# Labels no Service selects (a pod of a real service's name and color would take its traffic).
DRILL = "alert-drill"
RESTRICTED = client.V1SecurityContext(
    allow_privilege_escalation=False,
    read_only_root_filesystem=True,
    run_as_non_root=True,
    run_as_user=10001,
    run_as_group=10001,
    capabilities=client.V1Capabilities(drop=["ALL"]),
    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
)


def firing(cluster, alertname: str) -> list[dict]:
    return [
        sample["metric"]
        for sample in prometheus_query(cluster, f'ALERTS{{alertname="{alertname}", alertstate="firing"}}')
    ]


@pytest.fixture(scope="module")
def failures(cluster) -> Iterator[dict[str, str]]:
    """A migration Job whose one attempt exits 1, and a pod whose container needs 256 MiB under a
    64 MiB limit (the platform's image, so its python), both with the labels of a real workload."""
    batch = client.BatchV1Api(cluster.api)
    image = cluster.image(SERVICES[0], cluster.live_color(SERVICES[0]))
    suffix = uuid.uuid4().hex[:6]
    job_name, pod_name = f"{DRILL}-migrate-{suffix}", f"{DRILL}-blue-{suffix}"

    def container(name: str, code: str, memory: str) -> client.V1Container:
        return client.V1Container(
            name=name,
            image=image,
            image_pull_policy="IfNotPresent",
            command=["python", "-c", code],
            resources=client.V1ResourceRequirements(
                requests={"cpu": "10m", "memory": memory}, limits={"cpu": "500m", "memory": memory}
            ),
            security_context=RESTRICTED,
        )

    job_labels = {"app.kubernetes.io/name": DRILL, "app.kubernetes.io/component": "migrate"}
    batch.create_namespaced_job(
        NAMESPACE,
        client.V1Job(
            metadata=client.V1ObjectMeta(name=job_name, labels=job_labels),
            spec=client.V1JobSpec(
                backoff_limit=0,
                ttl_seconds_after_finished=600,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=job_labels),
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        automount_service_account_token=False,
                        containers=[container("migrate", "raise SystemExit('the migration fails')", "64Mi")],
                    ),
                ),
            ),
        ),
    )
    cluster.core.create_namespaced_pod(
        NAMESPACE,
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=pod_name,
                labels={"app.kubernetes.io/name": DRILL, "app.kubernetes.io/component": "drill", "color": "blue"},
            ),
            spec=client.V1PodSpec(
                restart_policy="Always",
                automount_service_account_token=False,
                # Written, not only reserved: a bytearray of zeros would stay unbacked by memory.
                containers=[container("hog", "b = b'x' * (256 << 20)", "64Mi")],
            ),
        ),
    )
    try:
        yield {"job": job_name, "pod": pod_name}
    finally:
        batch.delete_namespaced_job(job_name, NAMESPACE, propagation_policy="Background")
        cluster.core.delete_namespaced_pod(pod_name, NAMESPACE, grace_period_seconds=0)


def test_a_failed_migration_job_pages_with_its_service(cluster, failures):
    alerts = wait_until(
        lambda: [alert for alert in firing(cluster, "MigrationJobFailed") if alert["job_name"] == failures["job"]],
        timeout=120,
        interval=2,
        message=f"MigrationJobFailed fires for Job {failures['job']}",
    )
    assert [(alert["service"], alert["severity"], alert["namespace"]) for alert in alerts] == [
        (DRILL, "page", NAMESPACE)
    ]
    # A migration Job is not also reported as one of the other Jobs.
    assert [alert for alert in firing(cluster, "JobFailed") if alert["job_name"] == failures["job"]] == []


def test_a_container_killed_for_memory_is_reported_with_its_service_and_color(cluster, failures):
    def oom_killed() -> bool:
        pod = cluster.core.read_namespaced_pod(failures["pod"], NAMESPACE)
        statuses = pod.status.container_statuses or []
        return any(
            status.last_state.terminated and status.last_state.terminated.reason == "OOMKilled" for status in statuses
        )

    wait_until(oom_killed, timeout=120, interval=2, message="the kubelet reports the container OOMKilled")
    alerts = wait_until(
        lambda: [alert for alert in firing(cluster, "ContainerOOMKilled") if alert["pod"] == failures["pod"]],
        timeout=120,
        interval=2,
        message=f"ContainerOOMKilled fires for pod {failures['pod']}",
    )
    assert [(alert["service"], alert["color"], alert["container"], alert["severity"]) for alert in alerts] == [
        (DRILL, "blue", "hog", "ticket")
    ]


def test_every_kube_state_metrics_name_the_cluster_rules_use_is_scraped(cluster, failures):
    """After the failures above, even the series that exist only once something failed. (A CronJob's
    last success exists once one of its Jobs succeeded: test_backups runs them and looks for it.)"""
    named = set().union(
        *map(observability.metric_names, observability.rule_expressions(observability.CLUSTER_RULES_DIR))
    )
    assert {"kube_job_failed", "kube_pod_container_status_last_terminated_reason", LAST_SUCCESS} <= named
    named.discard(LAST_SUCCESS)

    def scraped() -> set[str]:
        return {
            name
            for name in named
            if prometheus_query(cluster, f'{name}{{job="kube-state-metrics", namespace="{NAMESPACE}"}}')
        }

    wait_until(lambda: scraped() == named, timeout=60, interval=2, message=f"Prometheus has {sorted(named)}")


def test_kube_state_metrics_reports_every_services_autoscaler_as_the_cluster_bounds_it(cluster):
    wanted = {
        service: cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE).spec.max_replicas
        for service in SERVICES
    }
    reported = {
        sample["metric"]["horizontalpodautoscaler"]: int(float(sample["value"][1]))
        for sample in prometheus_query(
            cluster, f'kube_horizontalpodautoscaler_spec_max_replicas{{namespace="{NAMESPACE}"}}'
        )
    }
    assert reported == wanted
