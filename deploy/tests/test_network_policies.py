"""The NetworkPolicies allow exactly the flows the platform uses, and each flow between services is a
call that exists in the code.

A small evaluator applies the policies the way the NetworkPolicy API defines them (a pod selected by
a policy of a direction is isolated in that direction; a flow needs the source's egress and the
destination's ingress) to every pair of peers: the platform's pods plus the ones outside it.
"""

import ipaddress
from pathlib import Path

import pytest

from deploy.tests.objects import matches, of_kind, pod_template, workloads
from deploy.tests.rendering import OVERLAYS

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "platform"
API_ROLES = ("auth/api", "orders/api", "payments/api", "notifications/api")
APP_ROLES = (
    *API_ROLES,
    "orders/outbox-relay",
    "payments/outbox-relay",
    "orders/payments-settle",
    "notifications/email-worker",
    "auth/prune",
    "orders/prune",
    "payments/prune",
    "payments/requests-finish",
    "notifications/prune",
    "auth/migrate",
    "orders/migrate",
    "payments/migrate",
    "notifications/migrate",
    "auth/service-clients",
    "auth/backup",
    "orders/backup",
    "payments/backup",
    "notifications/backup",
    "platform/secrets-backup",
)
# Peers outside the namespace, as the clusters run them.
EXTERNAL = {
    # Envoy Gateway's Envoy pods for the Gateway `platform` (labels as it sets them), and another
    # Gateway's in the same namespace, which must not get in.
    "gateway": {
        "namespace": "envoy-gateway-system",
        "labels": {
            "app.kubernetes.io/name": "envoy",
            "app.kubernetes.io/component": "proxy",
            "app.kubernetes.io/managed-by": "envoy-gateway",
            "gateway.envoyproxy.io/owning-gateway-name": "platform",
            "gateway.envoyproxy.io/owning-gateway-namespace": "platform",
        },
    },
    "other-gateway": {
        "namespace": "envoy-gateway-system",
        "labels": {
            "app.kubernetes.io/name": "envoy",
            "gateway.envoyproxy.io/owning-gateway-name": "shop",
            "gateway.envoyproxy.io/owning-gateway-namespace": "shop",
        },
    },
    # A solver pod cert-manager starts in this namespace for an HTTP-01 challenge.
    "acme-solver": {
        "namespace": "platform",
        "labels": {"acme.cert-manager.io/http01-solver": "true", "acme.cert-manager.io/http-domain": "1"},
        "ports": [("TCP", 8089)],
    },
    "prometheus": {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"}},
    "jaeger": {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "jaeger"}, "ports": [("TCP", 4318)]},
    "kube-dns": {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}, "ports": [("UDP", 53), ("TCP", 53)]},
    "other-namespace": {"namespace": "default", "labels": {"app": "curious"}, "ports": [("TCP", 8000)]},
    "internet": {"ip": "203.0.113.10", "ports": [("TCP", 443)]},
}
# Where the API server's service proxy comes from: a kind node, the local node's pod bridge, AKS's subnet.
CONTROL_PLANE_IP = {"kind": "172.18.0.2", "local": "10.214.0.1", "production": "10.20.0.4"}
MANAGED_DATABASE_IP = "10.20.8.4"
LOCAL_MACHINE_IP = "10.213.0.1"
MAIL_RELAY_IP = "10.20.9.4"


def _peers(objects: list[dict], overlay: str) -> dict[str, dict]:
    peers = {}
    for workload in workloads(objects):
        labels = pod_template(workload)["metadata"]["labels"]
        role = f"{labels['app.kubernetes.io/name']}/{labels['app.kubernetes.io/component']}"
        ports = [
            (p.get("protocol", "TCP"), p["containerPort"])
            for c in pod_template(workload)["spec"]["containers"]
            for p in c.get("ports", [])
        ]
        peers[role] = {"namespace": NAMESPACE, "labels": labels, "ports": ports}
    peers.update(EXTERNAL)
    peers["control-plane"] = {"ip": CONTROL_PLANE_IP[overlay]}
    if overlay == "local":  # the machine the single-node cluster runs on, its public entry
        peers["machine"] = {"ip": LOCAL_MACHINE_IP}
    if overlay == "production":
        peers["managed-postgresql"] = {"ip": MANAGED_DATABASE_IP, "ports": [("TCP", 5432)]}
        peers["mail-relay"] = {"ip": MAIL_RELAY_IP, "ports": [("TCP", 587)]}
    return peers


def _peer_matches(rule_peer: dict, peer: dict) -> bool:
    if "ipBlock" in rule_peer:
        if "ip" not in peer:
            return False
        address = ipaddress.ip_address(peer["ip"])
        block = rule_peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if "ip" in peer:
        return False
    if "namespaceSelector" in rule_peer:
        namespace_labels = {"kubernetes.io/metadata.name": peer["namespace"]}
        if not matches(rule_peer["namespaceSelector"], namespace_labels):
            return False
    elif peer["namespace"] != NAMESPACE:
        return False
    return matches(rule_peer.get("podSelector", {}), peer["labels"])


def _port_matches(rule: dict, protocol: str, port: int) -> bool:
    if not rule.get("ports"):
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in rule["ports"])


def _allowed_by(policies: list[dict], *, direction: str, subject: dict, other: dict, protocol: str, port: int) -> bool:
    """Whether `subject` (inside the namespace) lets the flow with `other` pass in `direction`."""
    if "ip" in subject or subject["namespace"] != NAMESPACE:
        return True  # not governed by this namespace's policies
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], subject["labels"])
    ]
    if not selecting:
        return True
    return any(
        _port_matches(rule, protocol, port)
        and (not rule.get(peers_key) or any(_peer_matches(peer, other) for peer in rule[peers_key]))
        for policy in selecting
        for rule in policy["spec"].get(key, [])
    )


def allowed_flows(objects: list[dict], overlay: str) -> set[tuple[str, str, str, int]]:
    """Every (source role, destination role, protocol, port) the policies let through."""
    policies = of_kind(objects, "NetworkPolicy")
    peers = _peers(objects, overlay)
    flows = set()
    for source, source_peer in peers.items():
        for destination, destination_peer in peers.items():
            inside = [peer.get("namespace") == NAMESPACE for peer in (source_peer, destination_peer)]
            if source == destination or not any(inside):
                continue  # flows between peers outside the namespace are not this platform's business
            for protocol, port in destination_peer.get("ports", []):
                egress = _allowed_by(
                    policies,
                    direction="Egress",
                    subject=source_peer,
                    other=destination_peer,
                    protocol=protocol,
                    port=port,
                )
                ingress = _allowed_by(
                    policies,
                    direction="Ingress",
                    subject=destination_peer,
                    other=source_peer,
                    protocol=protocol,
                    port=port,
                )
                if egress and ingress:
                    flows.add((source, destination, protocol, port))
    return flows


def expected_flows(overlay: str) -> set[tuple[str, str, str, int]]:
    in_cluster_database = overlay in {"kind", "local"}
    database = "postgresql/database" if in_cluster_database else "managed-postgresql"
    inside = [*APP_ROLES, "postgresql/database"] if in_cluster_database else list(APP_ROLES)
    callers_of_auth = [
        "orders/api",
        "payments/api",
        "notifications/api",
        "orders/outbox-relay",
        "payments/outbox-relay",
        "orders/payments-settle",
    ]
    flows = set()
    flows |= {(role, "kube-dns", protocol, 53) for role in inside for protocol in ("UDP", "TCP")}
    # allow-dns admits every pod of the namespace, cert-manager's solvers included.
    flows |= {("acme-solver", "kube-dns", protocol, 53) for protocol in ("UDP", "TCP")}
    flows |= {(source, api, "TCP", 8000) for source in ("gateway", "prometheus", "control-plane") for api in API_ROLES}
    workers = ("orders/outbox-relay", "payments/outbox-relay", "notifications/email-worker")
    flows |= {("prometheus", worker, "TCP", 9100) for worker in workers}  # their /metrics
    flows |= {(caller, "auth/api", "TCP", 8000) for caller in callers_of_auth}
    flows |= {(caller, "payments/api", "TCP", 8000) for caller in ("orders/api", "orders/payments-settle")}
    flows |= {(relay, "notifications/api", "TCP", 8000) for relay in ("orders/outbox-relay", "payments/outbox-relay")}
    # Every process of a service reaches its database; the Secrets' backup reads volumes, nothing else.
    flows |= {(role, database, "TCP", 5432) for role in APP_ROLES if role != "platform/secrets-backup"}
    # Spans over OTLP/HTTP from every process that traces (apps/core/tracing.configure's callers).
    tracing = (
        *API_ROLES,
        "orders/outbox-relay",
        "payments/outbox-relay",
        "notifications/email-worker",
        "orders/payments-settle",
    )
    flows |= {(role, "jaeger", "TCP", 4318) for role in tracing}
    if overlay == "local":
        flows |= {("machine", api, "TCP", 8000) for api in API_ROLES}
    if overlay == "production":  # notifications' worker sends email (manage.py email_deliver)
        flows.add(("notifications/email-worker", "mail-relay", "TCP", 587))
        # cert-manager's HTTP-01 challenges, asked through the Gateway (networkpolicy-acme-solver.yaml).
        flows.add(("gateway", "acme-solver", "TCP", 8089))
    return flows


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_policies_allow_exactly_the_platforms_flows(rendered, overlay):
    assert sorted(allowed_flows(rendered[overlay], overlay)) == sorted(expected_flows(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_default_deny_policy_isolates_every_pod_both_ways(rendered, overlay):
    denying = [
        p["metadata"]["name"]
        for p in of_kind(rendered[overlay], "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]

    assert denying == ["default-deny"]


def test_the_evaluator_denies_a_flow_no_policy_allows(rendered):
    assert ("payments/api", "orders/api", "TCP", 8000) not in allowed_flows(rendered["kind"], "kind")


def test_the_evaluator_needs_both_egress_and_ingress(rendered):
    only_egress = [
        p
        for p in rendered["kind"]
        if p["kind"] != "NetworkPolicy" or p["metadata"]["name"] != "allow-ingress-payments-from-orders"
    ]

    assert ("orders/api", "payments/api", "TCP", 8000) not in allowed_flows(only_egress, "kind")


# --- every flow between services is a call in the code -----------------------------------------------------


def _code(*relative: str) -> str:
    return "".join((REPO / path).read_text() for path in relative)


# What in the code makes each service call another: (caller roles, callee) -> evidence in the caller's code.
CALLS = {
    "auth/api": (
        {
            "orders/api",
            "payments/api",
            "notifications/api",
            "orders/outbox-relay",
            "payments/outbox-relay",
            "orders/payments-settle",
        },
        # Every service verifies tokens with auth's keys and takes client-credentials tokens from auth.
        [
            ("apps/core/tokens.py", "settings.AUTH_URL"),
            ("apps/core/tokens.py", '"/.well-known/jwks.json"'),
            ("apps/core/service_calls.py", '"/api/auth/token/"'),
        ],
    ),
    "payments/api": (
        {"orders/api", "orders/payments-settle"},
        [("apps/orders/payments_client.py", "settings.PAYMENTS_URL")],
    ),
    "notifications/api": (
        {"orders/outbox-relay", "payments/outbox-relay"},
        [
            ("apps/orders/models.py", 'base_url=settings.NOTIFICATIONS_URL, path="/api/notifications/events/"'),
            ("apps/payments/models.py", 'base_url=settings.NOTIFICATIONS_URL, path="/api/notifications/events/"'),
        ],
    ),
}


@pytest.mark.parametrize("callee", sorted(CALLS))
def test_the_calls_behind_each_service_flow_exist_in_the_code(callee):
    _, evidence = CALLS[callee]

    missing = [(path, text) for path, text in evidence if text not in _code(path)]

    assert missing == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_flow_between_services_is_a_known_call(rendered, overlay):
    between_services = {
        (source, destination)
        for source, destination, _, _ in allowed_flows(rendered[overlay], overlay)
        if "/" in source and destination in API_ROLES and source.split("/")[0] != destination.split("/")[0]
    }

    assert between_services == {(caller, callee) for callee, (callers, _) in CALLS.items() for caller in callers}


def test_the_settle_command_calls_payments_through_the_orders_services():
    command = _code("apps/orders/management/commands/order_payments_settle.py")

    assert "from apps.orders.services import orders_unsettled_settle" in command
