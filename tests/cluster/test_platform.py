"""The platform as deployed on the cluster: every service ready on its live color, the journey
through the stable Services, the autoscalers reading real metrics from metrics-server, and the
NetworkPolicies in force and enforced."""

import subprocess

import yaml
from kubernetes import client
from kubernetes.utils import parse_quantity

from tests.cluster.kube import KUBECONFIG, NAMESPACE, OVERLAY, REPO, SERVICES, kubectl, other_color, wait_until
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


def test_every_services_autoscaler_is_on_its_live_color_reading_cpu_from_metrics_server(cluster):
    """metrics-server scrapes the kubelet every 15 s; a new pod has a value within a minute or so."""
    autoscaling = cluster.autoscaling

    def cpu_per_pod():
        """Each live HPA's reading, in millicores per pod (its target is an AverageValue)."""
        found = {}
        for service in SERVICES:
            hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE)
            if hpa.spec.scale_target_ref.name != f"{service}-{cluster.live_color(service)}":
                return None
            metrics = hpa.status.current_metrics or []
            values = [m.resource.current.average_value for m in metrics if m.type == "Resource" and m.resource]
            if not values or values[0] is None:
                return None
            found[service] = float(parse_quantity(values[0])) * 1000
        return found

    found = wait_until(cpu_per_pod, timeout=180, interval=5, message="a CPU reading on every live HPA")
    assert set(found) == set(SERVICES)
    assert all(value >= 0 for value in found.values())


def test_the_overlays_network_policies_are_the_ones_in_force(cluster):
    rendered = subprocess.run(
        [str(kubectl()), "kustomize", str(OVERLAY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    wanted = {doc["metadata"]["name"] for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "NetworkPolicy"}
    applied = {
        policy.metadata.name
        for policy in client.NetworkingV1Api(cluster.api).list_namespaced_network_policy(NAMESPACE).items
    }
    assert applied == wanted
    assert "default-deny" in applied


def connects(cluster, *, source_pod: str, address: str, port: int) -> str:
    """From inside `source_pod`, whether a TCP connection to address:port opens ("open" or the error)."""
    program = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('{address}', {port}), timeout=3).close()\n"
        "    print('open')\n"
        "except OSError as error:\n"
        "    print(type(error).__name__)\n"
    )
    return cluster.exec(source_pod, ["python", "-c", program]).strip()


def test_the_network_policies_are_enforced_allowed_flows_open_and_others_refused(cluster):
    """kube-router's policy controller enforces them on this cluster: orders may call payments,
    payments may not call orders (no call in the code goes that way)."""
    orders = cluster.pods("orders", cluster.live_color("orders"))[0]
    payments = cluster.pods("payments", cluster.live_color("payments"))[0]
    assert connects(cluster, source_pod=orders.metadata.name, address=payments.status.pod_ip, port=8000) == "open"
    refused = connects(cluster, source_pod=payments.metadata.name, address=orders.status.pod_ip, port=8000)
    assert refused in {"ConnectionRefusedError", "TimeoutError"}


def kubectl_run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(kubectl()), "--kubeconfig", str(KUBECONFIG), "-n", NAMESPACE, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_api_server_refuses_to_move_a_field_the_tool_owns_behind_its_back(cluster):
    """The admission policy of deploy/base/bluegreen-guard.yaml, seen through the API server (as
    server-side dry runs: a guard that failed would change nothing either)."""
    live = cluster.live_color("orders")
    attempts = {
        "image": kubectl_run("set", "image", f"deployment/orders-{live}", "app=platform-app:other", "--dry-run=server"),
        "selector": kubectl_run(
            "patch", "service", "orders", "-p", '{"spec":{"selector":{"color":"nobody"}}}', "--dry-run=server"
        ),
        "autoscaler": kubectl_run(
            "patch", "hpa", "orders", "-p", '{"spec":{"scaleTargetRef":{"name":"orders-nobody"}}}', "--dry-run=server"
        ),
        # A setting (a changed platform-config-<hash> is a changed template too), on the live color,
        # on a relay and on a schedule.
        "setting": kubectl_run("set", "env", f"deployment/orders-{live}", "LOG_LEVEL=DEBUG", "--dry-run=server"),
        "relay setting": kubectl_run(
            "set", "env", "deployment/orders-outbox-relay", "LOG_LEVEL=DEBUG", "--dry-run=server"
        ),
        "schedule setting": kubectl_run("set", "env", "cronjob/orders-prune", "LOG_LEVEL=DEBUG", "--dry-run=server"),
    }
    assert {what: result.returncode for what, result in attempts.items()} == dict.fromkeys(attempts, 1)
    assert all("denied request" in result.stderr for result in attempts.values()), attempts


def test_a_restart_of_a_color_passes_the_guard(cluster):
    """`kubectl rollout restart` changes only the template's annotations: no new configuration."""
    live = cluster.live_color("orders")
    result = kubectl_run(
        "patch",
        "deployment",
        f"orders-{live}",
        "-p",
        '{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-05T00:00:00Z"}}}}}',
        "--dry-run=server",
    )
    assert result.returncode == 0, result.stderr


def test_a_change_stamped_as_the_tools_passes_the_guard(cluster):
    preview = cluster.core.read_namespaced_service("orders-preview", NAMESPACE).spec.selector["color"]
    result = kubectl_run(
        "patch",
        "service",
        "orders-preview",
        "-p",
        '{"metadata":{"annotations":{"bluegreen.platform.dev/change":"by-hand-' + preview + '"}},'
        '"spec":{"selector":{"color":"' + other_color(preview) + '"}}}',
        "--dry-run=server",
    )
    assert result.returncode == 0, result.stderr


def prometheus_query(cluster, query: str) -> list[dict]:
    """An instant query to the cluster's Prometheus, through the API server's service proxy."""
    from deploy.bluegreen.cluster import Cluster as ToolCluster

    status, body = ToolCluster(api_client=cluster.api, namespace=NAMESPACE).proxy_query(
        namespace="monitoring", service="prometheus", port="web", path="/api/v1/query", params={"query": query}
    )
    assert status == 200, body
    return yaml.safe_load(body)["data"]["result"]


def test_prometheus_scrapes_every_web_pod_with_its_service_and_color(cluster):
    """The Prometheus of deploy/monitoring/local, found and read the way the blue/green tool reads it."""
    wanted = {
        (pod.metadata.labels["app.kubernetes.io/name"], pod.metadata.labels["color"], pod.metadata.name)
        for service in SERVICES
        for color in ("blue", "green")
        for pod in cluster.pods(service, color)
        if pod.status.phase == "Running"
    }

    def scraped():
        targets = prometheus_query(cluster, 'up{job="platform", component=""} == 1')  # not the relays
        return {(t["metric"]["service"], t["metric"]["color"], t["metric"]["pod"]) for t in targets} >= wanted

    wait_until(scraped, timeout=60, interval=2, message="Prometheus scrapes every running web pod")

    def served():  # requests the services answered (the journey's, at least), within a scrape or two
        answered = 'sum by (service) (django_http_responses_total_by_status_total{job="platform"})'
        return {result["metric"]["service"] for result in prometheus_query(cluster, answered)} == set(SERVICES)

    wait_until(served, timeout=30, interval=2, message="Prometheus has every service's request counts")


def test_prometheus_evaluates_every_platform_rule_on_the_scraped_series(cluster):
    """The rules of platform/prometheus/rules and deploy/monitoring/rules, loaded from ConfigMap
    prometheus-rules, evaluate without error on the cluster's series; the SLO recordings have every
    service's numbers."""
    from deploy.bluegreen.cluster import Cluster as ToolCluster

    rule_files = [
        *sorted((REPO / "platform" / "prometheus" / "rules").glob("*.yml")),
        *sorted((REPO / "deploy" / "monitoring" / "rules").glob("*.yml")),
    ]
    wanted = sum(len(group["rules"]) for path in rule_files for group in yaml.safe_load(path.read_text())["groups"])

    def rules() -> list[dict]:
        status, body = ToolCluster(api_client=cluster.api, namespace=NAMESPACE).proxy_query(
            namespace="monitoring", service="prometheus", port="web", path="/api/v1/rules", params={}
        )
        assert status == 200, body
        return [rule for group in yaml.safe_load(body)["data"]["groups"] for rule in group["rules"]]

    assert len(rules()) == wanted
    wait_until(
        lambda: all(rule.get("lastEvaluation", "").startswith("2") for rule in rules()),
        timeout=60,
        interval=2,
        message="Prometheus has evaluated every rule",
    )
    assert [(rule["name"], rule.get("lastError")) for rule in rules() if rule["health"] != "ok"] == []

    def recorded():
        series = prometheus_query(cluster, "service:slo_availability_errors:ratio_rate5m")
        return {result["metric"]["service"] for result in series} == set(SERVICES)

    wait_until(recorded, timeout=60, interval=2, message="the availability SLO's ratio is recorded for every service")


def test_prometheus_scrapes_the_relays_and_the_email_worker_on_their_metrics_port(cluster):
    """Their delivery counts, through NetworkPolicy allow-prometheus-workers, labelled `component`."""

    def scraped():
        targets = prometheus_query(cluster, 'up{job="platform", component!=""} == 1')
        return {(t["metric"]["service"], t["metric"]["component"]) for t in targets} == {
            ("orders", "outbox-relay"),
            ("payments", "outbox-relay"),
            ("notifications", "email-worker"),
        }

    wait_until(scraped, timeout=60, interval=2, message="Prometheus scrapes both relays and the email worker")
    # Both relays count their deliveries; orders' has delivered the journey's events (an earlier test).
    # Payments emits events only for refunds, which the journey has none of: its count may be 0.
    query = 'sum by (service) (outbox_deliveries_total{component="outbox-relay", outcome="delivered"})'
    delivered = {result["metric"]["service"]: float(result["value"][1]) for result in prometheus_query(cluster, query)}
    assert (sorted(delivered), delivered["orders"] > 0) == (["orders", "payments"], True)


GATEWAY_API = ("gateway.networking.k8s.io", "v1")


def test_the_api_server_admits_the_gateway_and_the_public_route_against_their_definitions(cluster):
    """The Gateway API CRDs (deploy/gateway/crds.sh) are installed: the Gateway and its HTTPRoute are
    stored as the overlay declares them, routing each API prefix to its stable Service. No Gateway
    implementation runs on this cluster, so nothing serves them (deploy/gateway/README.md)."""
    objects = client.CustomObjectsApi(cluster.api)
    gateway = objects.get_namespaced_custom_object(*GATEWAY_API, NAMESPACE, "gateways", "platform")
    route = objects.get_namespaced_custom_object(*GATEWAY_API, NAMESPACE, "httproutes", "platform-api")
    backends = sorted({(ref["name"], ref["port"]) for rule in route["spec"]["rules"] for ref in rule["backendRefs"]})

    assert [listener["name"] for listener in gateway["spec"]["listeners"]] == ["http"]
    assert [parent["name"] for parent in route["spec"]["parentRefs"]] == ["platform"]
    assert backends == sorted((service, 80) for service in SERVICES)


def test_the_api_server_refuses_a_route_its_definition_forbids(cluster):
    """The CRDs' validation runs in the API server: a path that is not absolute is refused (422),
    on a dry run that stores nothing."""
    objects = client.CustomObjectsApi(cluster.api)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "relative-path", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "platform"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "api/"}}],
                    "backendRefs": [{"name": "auth", "port": 80}],
                }
            ],
        },
    }
    try:
        objects.create_namespaced_custom_object(*GATEWAY_API, NAMESPACE, "httproutes", route, dry_run="All")
    except client.ApiException as error:
        status = error.status
    else:
        status = 201

    assert status == 422
