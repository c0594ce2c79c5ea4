"""Traces in the cluster: the pods export over OTLP/HTTP to the Jaeger of namespace monitoring
(deploy/monitoring/base/jaeger.yaml, OTEL_EXPORTER_OTLP_ENDPOINT in platform-config, through
NetworkPolicy allow-traces), and an order placed through the stable Services is one trace across
orders, payments and, through the outbox relay, notifications, each span naming the color and
version of the pod that made it. Read through the API server's service proxy, as an operator would
with `kubectl port-forward` to the UI."""

from __future__ import annotations

import json

from tests.client import register_and_login
from tests.cluster.kube import NAMESPACE, wait_until
from tests.jaeger import Trace, order_place_traced, order_traced


def jaeger_trace(cluster, trace_id: str) -> Trace | None:
    from deploy.bluegreen.cluster import Cluster as ToolCluster

    status, body = ToolCluster(api_client=cluster.api, namespace=NAMESPACE).proxy_query(
        namespace="monitoring", service="jaeger", port="query", path=f"/api/traces/{trace_id}", params={}
    )
    if status == 404:
        return None
    assert status == 200, body
    data = json.loads(body)["data"]
    return Trace(data[0]) if data else None


def test_an_order_placed_through_the_stable_services_is_one_trace_in_the_clusters_jaeger(cluster):
    urls = cluster.urls
    with cluster.session() as session:
        _, tokens = register_and_login(urls["auth"], http=session)
        trace_id, client_span_id, placed = order_place_traced(urls["orders"], tokens["access_token"], http=session)
    assert placed.status_code == 201, placed.text

    def complete() -> Trace | None:
        trace = jaeger_trace(cluster, trace_id)
        return trace if order_traced(trace) else None

    # The relay polls the outbox, and each process sends its spans in batches every 5 s (the SDK's
    # default): the three services' spans arrive in any order, each up to a batch late.
    trace = wait_until(
        complete, timeout=90, interval=2, message=f"trace {trace_id} has orders, payments and notifications"
    )

    assert {"orders", "payments", "notifications"} <= trace.services()
    roots = trace.roots()
    assert [(span["service"], span["name"], span["parent"]) for span in roots] == [
        ("orders", "POST /api/orders/", client_span_id)
    ]
    charge = trace.find(service="payments", kind="server", name="POST /api/payments/")
    assert roots[0] in trace.ancestors(charge)
    send = trace.find(name="send order.paid")
    assert (send["service"], send["platform.component"]) == ("orders", "outbox-relay")
    # Each web span says which color and version served it: the live ones.
    for service in ("orders", "payments", "notifications"):
        live = cluster.live_color(service)
        served = {
            (span["platform.color"], span["service.version"])
            for span in trace.spans
            if span["service"] == service and span["kind"] == "server"
        }
        assert served == {(live, cluster.version(service)["version"])}, (service, served)
