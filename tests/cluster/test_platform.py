"""The platform as deployed on the cluster: every service ready on its live color, the journey
through the stable Services, and the autoscalers reading real metrics from metrics-server."""

from kubernetes import client

from tests.cluster.kube import NAMESPACE, SERVICES, wait_until
from tests.journey import journey_run


def test_every_service_is_ready_on_its_live_color_with_two_pods_at_least(cluster):
    for service in SERVICES:
        live = cluster.live_color(service)
        deployment = cluster.apps.read_namespaced_deployment(f"{service}-{live}", NAMESPACE)
        assert deployment.spec.replicas >= 2, service
        assert deployment.status.available_replicas == deployment.spec.replicas, service


def test_each_stable_service_sends_only_to_its_live_colors_ready_pods(cluster):
    discovery = client.DiscoveryV1Api(cluster.api)
    for service in SERVICES:
        live = cluster.live_color(service)
        slices = discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        ready = {
            endpoint.target_ref.name
            for piece in slices
            for endpoint in piece.endpoints or []
            if endpoint.conditions.ready
        }
        live_pods = {pod.metadata.name for pod in cluster.pods(service, live)}
        assert ready and ready <= live_pods, (service, ready, live_pods)


def test_the_outbox_relays_and_the_database_are_available(cluster):
    for name in ("orders-outbox-relay", "payments-outbox-relay"):
        assert cluster.apps.read_namespaced_deployment(name, NAMESPACE).status.available_replicas == 1, name
    assert cluster.apps.read_namespaced_stateful_set("postgresql", NAMESPACE).status.ready_replicas == 1


def test_the_journey_through_the_stable_services(cluster):
    with cluster.session() as session:
        result = journey_run(cluster.urls, http=session)
    assert result.inbox_types_by_order == {
        result.paid_order["id"]: "order.paid",
        result.declined_order["id"]: "order.payment_failed",
    }


def test_every_live_autoscaler_reads_cpu_from_metrics_server(cluster):
    """metrics-server scrapes the kubelet every 15 s; a new pod has a value within a minute or so."""
    autoscaling = cluster.autoscaling

    def utilizations():
        found = {}
        for service in SERVICES:
            hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(
                f"{service}-{cluster.live_color(service)}", NAMESPACE
            )
            metrics = hpa.status.current_metrics or []
            values = [m.resource.current.average_utilization for m in metrics if m.type == "Resource" and m.resource]
            if not values or values[0] is None:
                return None
            found[service] = values[0]
        return found

    found = wait_until(utilizations, timeout=180, interval=5, message="a CPU utilization on every live HPA")
    assert set(found) == set(SERVICES)
    assert all(isinstance(value, int) and value >= 0 for value in found.values())
