"""The platform's rules, checked on the rendered overlays: pod security, probes, blue/green wiring,
ports, autoscaling, disruption budgets, Jobs, references and settings."""

import re
import shlex
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from apps.core import checks, probes
from deploy.bluegreen.decisions import FOLLOWERS
from deploy.tests.objects import (
    COLORS,
    SERVICES,
    by_name,
    container,
    matches,
    of_kind,
    pod_template,
    selected_workloads,
    web_deployments,
    workloads,
)
from deploy.tests.rendering import OVERLAYS

REPO = Path(__file__).resolve().parents[2]
ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

TMP = "/tmp"  # noqa: S108 - the path the image writes to, not a temporary file of this test
overlays = pytest.mark.parametrize("overlay", OVERLAYS)


def _config_map(objects: list[dict]) -> dict:
    """ConfigMap platform-config-<hash>: the settings, named after their content."""
    (config_map,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("platform-config-")]
    return config_map


def _config(objects: list[dict]) -> dict[str, str]:
    return _config_map(objects)["data"]


def restricted_violations(pod_spec: dict) -> list[str]:
    """Where a pod spec breaks the Pod Security `restricted` profile (the rules the admission applies)."""
    violations = []
    pod_context = pod_spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            violations.append(field)
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            violations.append(f"volume {volume['name']} of type {kinds}")
    if pod_context.get("runAsUser") == 0:
        violations.append("pod runAsUser 0")
    for c in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        violations += _container_violations(c, pod_context)
    return violations


def _container_violations(c: dict, pod_context: dict) -> list[str]:
    violations = []
    context = c.get("securityContext", {})
    name = c["name"]
    if context.get("privileged"):
        violations.append(f"{name} privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        violations.append(f"{name} allowPrivilegeEscalation not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        violations.append(f"{name} does not drop ALL capabilities")
    if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
        violations.append(f"{name} adds capabilities")
    if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
        violations.append(f"{name} runAsNonRoot not true")
    if context.get("runAsUser") == 0:
        violations.append(f"{name} runAsUser 0")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
    if seccomp not in {"RuntimeDefault", "Localhost"}:
        violations.append(f"{name} seccomp {seccomp}")
    if any(port.get("hostPort") for port in c.get("ports", [])):
        violations.append(f"{name} hostPort")
    return violations


# --- the namespace and pod security -----------------------------------------------------------------------


@overlays
def test_the_namespace_enforces_the_restricted_pod_security_profile(rendered, overlay):
    labels = by_name(rendered[overlay], "Namespace")["platform"]["metadata"]["labels"]

    assert {mode: labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {
        "enforce": "restricted",
        "audit": "restricted",
        "warn": "restricted",
    }


CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@overlays
def test_every_namespaced_object_lives_in_the_platform_namespace(rendered, overlay):
    namespaces = {obj["metadata"].get("namespace") for obj in rendered[overlay] if obj["kind"] not in CLUSTER_SCOPED}

    assert namespaces == {"platform"}


def test_the_local_overlay_adds_two_cluster_scoped_objects_the_volumes_of_its_database_and_backups(rendered):
    """kustomize (v5.5, kubernetes-sigs/kustomize#6051) writes a namespace into the admission policy
    and its binding, which the API server drops for cluster-scoped kinds; the others carry none."""
    cluster_scoped = sorted(
        (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        for obj in rendered["local"]
        if obj["kind"] in CLUSTER_SCOPED
    )
    assert cluster_scoped == [
        ("Namespace", "platform", None),
        ("PersistentVolume", "platform-backups", None),
        ("PersistentVolume", "platform-postgresql-data", None),
        ("ValidatingAdmissionPolicy", "platform-bluegreen-owned-fields", "platform"),
        ("ValidatingAdmissionPolicyBinding", "platform-bluegreen-owned-fields", "platform"),
    ]


@overlays
def test_every_pod_meets_the_restricted_profile(rendered, overlay):
    violations = {
        w["metadata"]["name"]: restricted_violations(pod_template(w)["spec"]) for w in workloads(rendered[overlay])
    }

    assert {name: found for name, found in violations.items() if found} == {}


def test_the_restricted_check_catches_a_root_container():
    pod_spec = {"containers": [{"name": "app", "securityContext": {"runAsUser": 0}}]}

    assert restricted_violations(pod_spec) == [
        "app allowPrivilegeEscalation not false",
        "app does not drop ALL capabilities",
        "app runAsNonRoot not true",
        "app runAsUser 0",
        "app seccomp None",
    ]


@overlays
def test_the_image_runs_as_its_numeric_user(rendered, overlay):
    users = {
        (
            pod_template(w)["spec"]["securityContext"]["runAsUser"],
            pod_template(w)["spec"]["securityContext"]["runAsGroup"],
        )
        for w in workloads(rendered[overlay])
        if w["metadata"]["labels"]["app.kubernetes.io/name"] in SERVICES
        and w["metadata"]["labels"]["app.kubernetes.io/component"] != "backup"
    }

    assert users == {(10001, 10001)}


@overlays
def test_the_backups_run_as_the_database_images_user_which_owns_their_volume(rendered, overlay):
    users = {
        w["metadata"]["name"]: (
            pod_template(w)["spec"]["securityContext"]["runAsUser"],
            pod_template(w)["spec"]["securityContext"]["fsGroup"],
        )
        for w in of_kind(rendered[overlay], "CronJob")
        if w["metadata"]["name"].endswith("-backup")
    }

    backups = ("auth-backup", "orders-backup", "payments-backup", "notifications-backup", "platform-secrets-backup")
    assert users == dict.fromkeys(backups, (999, 999))


@overlays
def test_every_container_has_a_read_only_root_filesystem(rendered, overlay):
    writable = [
        (w["metadata"]["name"], c["name"])
        for w in workloads(rendered[overlay])
        for c in pod_template(w)["spec"]["containers"]
        if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True
    ]

    assert writable == []


@overlays
def test_every_container_writes_tmp_to_an_empty_dir(rendered, overlay):
    missing = []
    for w in workloads(rendered[overlay]):
        spec = pod_template(w)["spec"]
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if mounts.get(TMP) not in empty_dirs:
                missing.append((w["metadata"]["name"], c["name"]))

    assert missing == []


@overlays
def test_no_pod_mounts_a_service_account_token(rendered, overlay):
    mounting = [
        w["metadata"]["name"]
        for w in workloads(rendered[overlay])
        if pod_template(w)["spec"].get("automountServiceAccountToken") is not False
    ]

    assert mounting == []


@overlays
def test_every_container_has_cpu_and_memory_requests_and_limits(rendered, overlay):
    incomplete = [
        (w["metadata"]["name"], c["name"])
        for w in workloads(rendered[overlay])
        for c in pod_template(w)["spec"]["containers"]
        if not all(
            c.get("resources", {}).get(kind, {}).get(r) for kind in ("requests", "limits") for r in ("cpu", "memory")
        )
    ]

    assert incomplete == []


# --- blue and green ---------------------------------------------------------------------------------------


@overlays
def test_each_service_has_a_blue_and_a_green_deployment(rendered, overlay):
    names = sorted(d["metadata"]["name"] for d in web_deployments(rendered[overlay]))

    assert names == sorted(f"{service}-{color}" for service in SERVICES for color in COLORS)


@overlays
def test_web_deployments_carry_the_name_and_color_labels(rendered, overlay):
    labels = {
        d["metadata"]["name"]: (
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
            d["spec"]["template"]["metadata"]["labels"]["color"],
        )
        for d in web_deployments(rendered[overlay])
    }

    assert labels == {f"{service}-{color}": (service, color) for service in SERVICES for color in COLORS}


def _without_color(deployment: dict, color: str) -> str:
    return re.sub(rf"\b{color}\b", "COLOR", repr(deployment))


@overlays
@pytest.mark.parametrize("service", SERVICES)
def test_blue_and_green_differ_only_in_their_color(rendered, overlay, service):
    deployments = by_name(rendered[overlay], "Deployment")

    assert _without_color(deployments[f"{service}-blue"], "blue") == _without_color(
        deployments[f"{service}-green"], "green"
    )


@overlays
def test_each_color_tells_the_process_its_color(rendered, overlay):
    colors = {
        d["metadata"]["name"]: {e["name"]: e.get("value") for e in container(d, "app")["env"]}["DEPLOY_COLOR"]
        for d in web_deployments(rendered[overlay])
    }

    assert colors == {f"{service}-{color}": color for service in SERVICES for color in COLORS}


@overlays
def test_each_deployment_serves_its_own_service(rendered, overlay):
    served = {
        d["metadata"]["name"]: {e["name"]: e.get("value") for e in container(d, "app")["env"]}["SERVICE"]
        for d in web_deployments(rendered[overlay])
    }

    assert served == {f"{service}-{color}": service for service in SERVICES for color in COLORS}


# --- probes and shutdown ------------------------------------------------------------------------------------


@overlays
def test_web_probes_use_the_real_probe_paths(rendered, overlay):
    paths = {
        (c_probe, container(d, "app")[c_probe]["httpGet"]["path"])
        for d in web_deployments(rendered[overlay])
        for c_probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }

    assert paths == {("startupProbe", "/healthz"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")}


def test_the_probe_paths_are_views_of_the_code():
    assert {"/healthz", "/readyz"} <= set(probes.VIEWS)


@overlays
def test_startup_and_readiness_ask_django_and_liveness_the_workers_own_port(rendered, overlay):
    config = _config(rendered[overlay])
    ports = {}
    for d in web_deployments(rendered[overlay]):
        app = container(d, "app")
        named = {p["name"]: p["containerPort"] for p in app["ports"]}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            ports.setdefault(kind, set()).add(named[app[kind]["httpGet"]["port"]])

    assert ports == {
        "startupProbe": {int(config["PORT"])},
        "readinessProbe": {int(config["PORT"])},
        "livenessProbe": {int(config["LIVENESS_PORT"])},
    }
    assert int(config["LIVENESS_PORT"]) != int(config["PORT"])


@overlays
def test_the_container_port_is_the_port_gunicorn_binds(rendered, overlay):
    config = _config(rendered[overlay])
    container_ports = {container(d, "app")["ports"][0]["containerPort"] for d in web_deployments(rendered[overlay])}

    assert (container_ports, config["HOST"]) == ({8000}, "0.0.0.0")  # noqa: S104


def _prestop_sleep(deployment: dict, drain_file: str) -> int:
    command = container(deployment, "app")["lifecycle"]["preStop"]["exec"]["command"]
    match = re.fullmatch(rf"touch {re.escape(drain_file)} && sleep (\d+)", command[2])
    assert command[:2] == ["sh", "-c"]
    assert match is not None, command
    return int(match[1])


@overlays
def test_prestop_marks_the_pod_draining_then_sleeps(rendered, overlay):
    drain_file = _config(rendered[overlay])["DRAIN_FILE"]

    sleeps = {_prestop_sleep(d, drain_file) for d in web_deployments(rendered[overlay])}

    assert sleeps == {10}


@overlays
def test_the_grace_period_covers_the_prestop_sleep_and_gunicorn_drain(rendered, overlay):
    config = _config(rendered[overlay])
    too_short = [
        d["metadata"]["name"]
        for d in web_deployments(rendered[overlay])
        if d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        <= _prestop_sleep(d, config["DRAIN_FILE"]) + int(config["GUNICORN_GRACEFUL_TIMEOUT"])
    ]

    assert too_short == []


def test_the_drain_file_is_the_one_the_code_checks():
    settings_source = (REPO / "apps" / "settings.py").read_text()

    assert 'DRAIN_FILE = os.environ.get("DRAIN_FILE", "/tmp/draining")' in settings_source


@overlays
def test_web_pods_spread_over_zones_and_nodes_within_their_own_color(rendered, overlay):
    spreads = {}
    for d in web_deployments(rendered[overlay]):
        labels = d["spec"]["template"]["metadata"]["labels"]
        constraints = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
        spreads[d["metadata"]["name"]] = sorted(
            (c["topologyKey"], matches(c["labelSelector"], labels)) for c in constraints
        )

    assert set(map(repr, spreads.values())) == {
        repr([("kubernetes.io/hostname", True), ("topology.kubernetes.io/zone", True)])
    }


# --- Services, ports and the Ingress -------------------------------------------------------------------------


@overlays
@pytest.mark.parametrize("service", SERVICES)
def test_the_stable_service_selects_exactly_the_live_colors_pods(rendered, overlay, service):
    stable = by_name(rendered[overlay], "Service")[service]

    assert selected_workloads(rendered[overlay], stable["spec"]["selector"]) == [f"{service}-blue"]


@overlays
@pytest.mark.parametrize("service", SERVICES)
def test_the_preview_service_selects_exactly_the_idle_colors_pods(rendered, overlay, service):
    preview = by_name(rendered[overlay], "Service")[f"{service}-preview"]

    assert selected_workloads(rendered[overlay], preview["spec"]["selector"]) == [f"{service}-green"]


@overlays
def test_every_service_selects_the_pods_of_exactly_one_workload(rendered, overlay):
    counts = {
        s["metadata"]["name"]: len(selected_workloads(rendered[overlay], s["spec"]["selector"]))
        for s in of_kind(rendered[overlay], "Service")
    }

    assert set(counts.values()) == {1}


@overlays
def test_service_target_ports_name_a_port_of_the_selected_pods(rendered, overlay):
    objects = rendered[overlay]
    workloads_by_name = {w["metadata"]["name"]: w for w in workloads(objects)}
    unresolved = []
    for service in of_kind(objects, "Service"):
        (workload,) = selected_workloads(objects, service["spec"]["selector"])
        ports = {p["name"] for c in pod_template(workloads_by_name[workload])["spec"]["containers"] for p in c["ports"]}
        unresolved += [
            (service["metadata"]["name"], p["targetPort"])
            for p in service["spec"]["ports"]
            if p["targetPort"] not in ports
        ]

    assert unresolved == []


def _routes(objects: list[dict]) -> dict[str, dict]:
    return by_name(objects, "HTTPRoute")


@overlays
def test_the_public_route_sends_each_api_prefix_to_its_stable_service(rendered, overlay):
    route = _routes(rendered[overlay])["platform-api"]
    routes = {
        (match["path"]["type"], match["path"]["value"]): [(b["name"], b["port"]) for b in rule["backendRefs"]]
        for rule in route["spec"]["rules"]
        for match in rule["matches"]
    }

    assert routes == {
        ("PathPrefix", "/api/auth/"): [("auth", 80)],
        ("Exact", "/.well-known/jwks.json"): [("auth", 80)],
        ("PathPrefix", "/api/orders/"): [("orders", 80)],
        ("PathPrefix", "/api/payments/"): [("payments", 80)],
        ("PathPrefix", "/api/notifications/"): [("notifications", 80)],
    }


@overlays
def test_route_backends_are_ports_their_services_have(rendered, overlay):
    services = by_name(rendered[overlay], "Service")
    missing = [
        (route["metadata"]["name"], backend["name"], backend["port"])
        for route in of_kind(rendered[overlay], "HTTPRoute")
        for rule in route["spec"]["rules"]
        for backend in rule.get("backendRefs", [])
        if backend["name"] not in services
        or backend["port"] not in {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
    ]

    assert missing == []


@overlays
def test_every_route_attaches_to_a_listener_of_the_gateway_for_its_host(rendered, overlay):
    (gateway,) = of_kind(rendered[overlay], "Gateway")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    unattached = [
        (route["metadata"]["name"], parent.get("sectionName"))
        for route in of_kind(rendered[overlay], "HTTPRoute")
        for parent in route["spec"]["parentRefs"]
        if parent["name"] != gateway["metadata"]["name"]
        or parent.get("sectionName") not in listeners
        or route["spec"]["hostnames"] != [listeners[parent["sectionName"]]["hostname"]]
    ]

    assert unattached == []


def test_production_serves_the_api_on_https_only_and_redirects_plain_http(rendered):
    objects = rendered["production"]
    (gateway,) = of_kind(objects, "Gateway")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    routes = _routes(objects)
    redirect = routes["platform-api-redirect"]["spec"]["rules"]

    assert routes["platform-api"]["spec"]["parentRefs"] == [{"name": "platform", "sectionName": "https"}]
    assert listeners["https"]["tls"] == {"mode": "Terminate", "certificateRefs": [{"name": "platform-api-tls"}]}
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert redirect == [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
    ]


def _seconds(duration: str) -> int:
    """A Gateway API duration such as 60s or 1m (the forms these manifests use)."""
    value, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()
    return int(value) * {"s": 1, "m": 60}[unit]


def _gunicorn_setting(name: str, variable: str) -> int:
    """A gunicorn setting's default, as platform/gunicorn.conf.py reads it from its variable."""
    text = (REPO / "platform" / "gunicorn.conf.py").read_text()
    return int(re.search(rf'^{name} = int\(os\.environ\.get\("{variable}", "(\d+)"\)\)', text, re.M)[1])


@overlays
def test_the_gateway_closes_idle_connections_to_the_pods_before_gunicorn_does(rendered, overlay):
    """A proxy that reuses a socket its backend is closing turns a POST into a 502: Envoy's idle
    timeout toward the pods must be below gunicorn's keep-alive (which no overlay changes)."""
    (policy,) = of_kind(rendered[overlay], "BackendTrafficPolicy")
    idle = _seconds(policy["spec"]["timeout"]["http"]["connectionIdleTimeout"])

    assert "GUNICORN_KEEPALIVE" not in _config(rendered[overlay])
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "platform-api"}
    ]
    assert idle < _gunicorn_setting("keepalive", "GUNICORN_KEEPALIVE")


@overlays
def test_the_gateway_waits_for_a_request_longer_than_a_worker_may_take(rendered, overlay):
    """Cutting a request short only turns work still being done into a 504 and a retry: the
    gateway's request timeout is above gunicorn's worker timeout, the bound on any request."""
    (policy,) = of_kind(rendered[overlay], "BackendTrafficPolicy")

    assert _seconds(policy["spec"]["timeout"]["http"]["requestTimeout"]) > _gunicorn_setting(
        "timeout", "GUNICORN_TIMEOUT"
    )


@overlays
def test_the_service_urls_point_at_the_stable_services_port_80(rendered, overlay):
    config = _config(rendered[overlay])
    services = by_name(rendered[overlay], "Service")
    resolved = {}
    for variable in ("AUTH_URL", "ORDERS_URL", "PAYMENTS_URL", "NOTIFICATIONS_URL"):
        host = re.fullmatch(r"http://([a-z-]+)\.platform\.svc\.cluster\.local", config[variable])[1]
        resolved[variable] = (host, [p["port"] for p in services[host]["spec"]["ports"]])

    assert resolved == {
        "AUTH_URL": ("auth", [80]),
        "ORDERS_URL": ("orders", [80]),
        "PAYMENTS_URL": ("payments", [80]),
        "NOTIFICATIONS_URL": ("notifications", [80]),
    }


@overlays
def test_allowed_hosts_cover_the_public_host_and_the_service_names(rendered, overlay):
    allowed = _config(rendered[overlay])["ALLOWED_HOSTS"].split(",")
    (hostname,) = _routes(rendered[overlay])["platform-api"]["spec"]["hostnames"]

    assert allowed == [hostname, ".platform.svc.cluster.local"]


@overlays
def test_x_forwarded_for_is_believed_from_the_pods_subnet_only(rendered, overlay):
    """The Gateway's Envoy pods get addresses in the cluster's pod subnet; without trusting them,
    every client shares Envoy's address and its login limits (apps/core/client_address.py)."""
    pods_subnet = {"kind": "10.244.0.0/16", "local": "10.214.0.0/24", "production": "10.20.32.0/19"}

    assert _config(rendered[overlay])["TRUSTED_PROXIES"] == pods_subnet[overlay]


# --- autoscaling and disruption -------------------------------------------------------------------------------


@overlays
def test_each_service_has_one_hpa_named_after_it_on_its_first_live_color(rendered, overlay):
    """The blue/green tool moves it to the live color on every switch; the idle color has none."""
    targets = {
        h["metadata"]["name"]: h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
    }

    assert targets == {service: f"{service}-blue" for service in SERVICES}


@overlays
def test_no_web_deployment_sets_replicas(rendered, overlay):
    """The live color's count is its HPA's, the idle color's the tool's: a manifest setting either
    would reset it on every apply."""
    assert [d["metadata"]["name"] for d in web_deployments(rendered[overlay]) if "replicas" in d["spec"]] == []


@overlays
def test_hpas_target_existing_deployments(rendered, overlay):
    deployments = by_name(rendered[overlay], "Deployment")
    targets = [
        (
            h["spec"]["scaleTargetRef"]["apiVersion"],
            h["spec"]["scaleTargetRef"]["kind"],
            h["spec"]["scaleTargetRef"]["name"] in deployments,
        )
        for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
    ]

    assert set(targets) == {("apps/v1", "Deployment", True)}


@overlays
def test_deployments_managed_by_an_hpa_do_not_set_replicas(rendered, overlay):
    deployments = by_name(rendered[overlay], "Deployment")
    fighting = [
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
        if "replicas" in deployments[h["spec"]["scaleTargetRef"]["name"]]["spec"]
    ]

    assert fighting == []


@overlays
def test_hpa_targets_request_cpu_on_every_container(rendered, overlay):
    deployments = by_name(rendered[overlay], "Deployment")
    without_cpu = [
        (h["metadata"]["name"], c["name"])
        for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
        for c in deployments[h["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]["containers"]
        if not c["resources"]["requests"].get("cpu")
    ]

    assert without_cpu == []


@overlays
def test_every_pdb_covers_the_pods_of_exactly_one_web_deployment(rendered, overlay):
    covered = {
        p["metadata"]["name"]: selected_workloads(rendered[overlay], p["spec"]["selector"])
        for p in of_kind(rendered[overlay], "PodDisruptionBudget")
    }

    assert covered == {f"{service}-{color}": [f"{service}-{color}"] for service in SERVICES for color in COLORS}


@overlays
def test_pdbs_never_block_a_color_scaled_to_zero(rendered, overlay):
    budgets = {
        (p["spec"].get("maxUnavailable"), "minAvailable" in p["spec"])
        for p in of_kind(rendered[overlay], "PodDisruptionBudget")
    }

    assert budgets == {(1, False)}


# --- Jobs, relays and schedules ------------------------------------------------------------------------------


def _env(workload: dict, container_name: str) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(workload, container_name).get("env", [])}


@overlays
def test_each_service_has_a_migration_job_for_its_own_database(rendered, overlay):
    jobs = by_name(rendered[overlay], "Job")
    migrations = {
        service: (
            container(jobs[f"{service}-migrate"], "migrate")["command"],
            _env(jobs[f"{service}-migrate"], "migrate")["SERVICE"],
        )
        for service in SERVICES
    }

    assert migrations == {service: (["python", "manage.py", "migrate", "--no-input"], service) for service in SERVICES}


@overlays
def test_the_settings_are_named_after_their_content_and_immutable(rendered, overlay):
    """A changed setting is a new ConfigMap, never a change of the one a running color reads."""
    config_map = _config_map(rendered[overlay])
    install = by_name(rendered[overlay], "ConfigMap")["platform-install-config"]

    assert re.fullmatch(r"platform-config-[a-z0-9]{10}", config_map["metadata"]["name"])
    assert config_map["immutable"] is True
    assert install["data"] == config_map["data"]


def _settings_read(workload: dict) -> set[str]:
    spec = pod_template(workload)["spec"]
    return {
        ref["configMapRef"]["name"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]
        for ref in c.get("envFrom", [])
        if "configMapRef" in ref
    }


@overlays
def test_every_workload_that_runs_reads_the_versioned_settings_and_the_first_applys_jobs_the_fixed_ones(
    rendered, overlay
):
    """The Deployments and schedules get a new template when a setting changes (a deploy, then the
    promote, moves it to them); the first apply's Jobs, which never run again and whose template may
    not change, read the same settings by a name that does not."""
    versioned = _config_map(rendered[overlay])["metadata"]["name"]
    reads = {w["metadata"]["name"]: _settings_read(w) for w in workloads(rendered[overlay]) if _settings_read(w)}
    jobs = {job["metadata"]["name"] for job in of_kind(rendered[overlay], "Job")}

    running = set(reads) - jobs

    assert {name: reads[name] for name in jobs} == {name: {"platform-install-config"} for name in jobs}
    assert {name: reads[name] for name in running} == {name: {versioned} for name in running}
    assert len(running) == 8 + 3 + 6  # the colors, the relays and the worker, the schedules


@overlays
def test_the_first_applys_jobs_are_kept_once_finished_so_a_later_apply_runs_none_again(rendered, overlay):
    """A Job removed after its time to live is created again by the next apply of the manifests, and
    runs the first apply's image again; kept, it is found unchanged and nothing runs."""
    lifetimes = {
        job["metadata"]["name"]: job["spec"].get("ttlSecondsAfterFinished") for job in of_kind(rendered[overlay], "Job")
    }

    assert lifetimes == dict.fromkeys([*(f"{s}-migrate" for s in SERVICES), "auth-service-clients"])


@overlays
def test_cds_backups_role_may_change_exactly_the_backup_cronjobs(rendered, overlay):
    """CD moves the backups to a new backup image with `kubectl set image` (get, then patch) on these
    CronJobs by name; no other object, and no list that would show the rest of the namespace."""
    (rule,) = by_name(rendered[overlay], "Role")["backups-operator"]["rules"]
    backups = sorted(
        cronjob["metadata"]["name"]
        for cronjob in of_kind(rendered[overlay], "CronJob")
        if cronjob["metadata"]["labels"]["app.kubernetes.io/component"] in {"backup", "secrets-backup"}
    )

    assert (rule["apiGroups"], rule["resources"], rule["verbs"]) == (["batch"], ["cronjobs"], ["get", "patch"])
    assert sorted(rule["resourceNames"]) == backups
    assert len(backups) == 5


@overlays
def test_the_relays_run_the_outbox_relay_of_orders_and_payments(rendered, overlay):
    deployments = by_name(rendered[overlay], "Deployment")
    relays = {
        name: (container(d, "relay")["command"], _env(d, "relay")["SERVICE"])
        for name, d in deployments.items()
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "outbox-relay"
    }

    assert relays == {
        "orders-outbox-relay": (["python", "manage.py", "outbox_relay", "--metrics-port", "9100"], "orders"),
        "payments-outbox-relay": (["python", "manage.py", "outbox_relay", "--metrics-port", "9100"], "payments"),
    }


def test_the_relay_command_exists_in_the_code():
    assert (REPO / "apps" / "core" / "management" / "commands" / "outbox_relay.py").is_file()


def test_the_settle_command_exists_in_the_code():
    assert (REPO / "apps" / "orders" / "management" / "commands" / "order_payments_settle.py").is_file()


@overlays
def test_every_cronjob_and_worker_runs_a_command_of_its_own_service(rendered, overlay):
    """Each schedule and worker runs a management command that exists, with SERVICE naming its app."""
    from django.core.management import get_commands

    commands = get_commands()
    runs = {}
    for workload in workloads(rendered[overlay]):
        labels = pod_template(workload)["metadata"]["labels"]
        if labels["app.kubernetes.io/name"] not in SERVICES or labels["app.kubernetes.io/component"] in {
            "api",
            "migrate",
            "service-clients",
            "backup",
        }:
            continue
        (only,) = pod_template(workload)["spec"]["containers"]
        command = only["command"]
        runs[workload["metadata"]["name"]] = (
            command[2],
            commands.get(command[2]),
            _env(workload, only["name"])["SERVICE"],
        )

    assert runs == {
        "orders-outbox-relay": ("outbox_relay", "apps.core", "orders"),
        "payments-outbox-relay": ("outbox_relay", "apps.core", "payments"),
        "notifications-email-worker": ("email_deliver", "apps.notifications", "notifications"),
        "orders-payments-settle": ("order_payments_settle", "apps.orders", "orders"),
        "payments-requests-finish": ("payments_requests_finish", "apps.payments", "payments"),
        "auth-prune": ("auth_prune", "apps.auth", "auth"),
        "orders-prune": ("orders_prune", "apps.orders", "orders"),
        "payments-prune": ("payments_prune", "apps.payments", "payments"),
        "notifications-prune": ("notifications_prune", "apps.notifications", "notifications"),
    }


def _client_provisioning(text: str) -> dict[str, tuple[str, list[str]]]:
    """client id -> (secret variable, scopes) of every `service_client_ensure` call in a shell text."""
    calls = {}
    for chunk in text.replace("\\\n", " ").split("service_client_ensure")[1:]:
        words = shlex.split(chunk.split("&&")[0].split("\n")[0])
        scopes = [words[i + 1] for i, word in enumerate(words) if word == "--scope"]
        calls[words[0]] = (words[words.index("--secret-env") + 1], scopes)
    return calls


@overlays
def test_the_service_clients_job_grants_the_scopes_of_the_local_setup(rendered, overlay):
    job = by_name(rendered[overlay], "Job")["auth-service-clients"]
    local_setup = (REPO / "platform" / "local-setup.sh").read_text()

    assert _client_provisioning(container(job, "service-clients")["command"][2]) == _client_provisioning(local_setup)


@overlays
def test_the_service_clients_job_reads_each_clients_secret_from_that_services_secret(rendered, overlay):
    job = by_name(rendered[overlay], "Job")["auth-service-clients"]
    sources = {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container(job, "service-clients")["env"]
        if "valueFrom" in e
    }

    assert sources == {
        "ORDERS_CLIENT_SECRET": ("orders-secrets", "SERVICE_CLIENT_SECRET"),
        "PAYMENTS_CLIENT_SECRET": ("payments-secrets", "SERVICE_CLIENT_SECRET"),
        "NOTIFICATIONS_CLIENT_SECRET": ("notifications-secrets", "SERVICE_CLIENT_SECRET"),
    }


@overlays
def test_each_caller_identifies_with_its_own_client_id(rendered, overlay):
    ids = {
        w["metadata"]["name"]: _env(w, pod_template(w)["spec"]["containers"][0]["name"]).get("SERVICE_CLIENT_ID")
        for w in workloads(rendered[overlay])
        if w["metadata"]["labels"].get("app.kubernetes.io/component") in {"api", "outbox-relay", "payments-settle"}
    }

    assert ids == {name: (None if name.startswith("auth-") else name.split("-")[0]) for name in ids}


# --- references, secrets and settings ------------------------------------------------------------------------


def _references(workload: dict) -> set[tuple[str, str]]:
    spec = pod_template(workload)["spec"]
    found = {("ServiceAccount", spec["serviceAccountName"])} if "serviceAccountName" in spec else set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
    for c in spec["containers"]:
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                found.add(("Secret", source["secretRef"]["name"]))
            if "configMapRef" in source:
                found.add(("ConfigMap", source["configMapRef"]["name"]))
        for variable in c.get("env", []):
            if "secretKeyRef" in variable.get("valueFrom", {}):
                found.add(("Secret", variable["valueFrom"]["secretKeyRef"]["name"]))
    return found


@overlays
def test_every_referenced_secret_config_map_and_service_account_exists(rendered, overlay):
    existing = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered[overlay]}
    referenced = set().union(*(_references(w) for w in workloads(rendered[overlay])))

    assert referenced - existing == set()


def _secret_keys(objects: list[dict]) -> dict[str, list[str]]:
    return {name: sorted(s.get("data", {})) for name, s in by_name(objects, "Secret").items()}


@overlays
def test_each_services_secret_holds_what_its_settings_require(rendered, overlay):
    keys = _secret_keys(rendered[overlay])

    assert {service: keys[f"{service}-secrets"] for service in SERVICES} == {
        "auth": ["DATABASE_URL", "SECRET_KEY"],
        "orders": ["DATABASE_URL", "SECRET_KEY", "SERVICE_CLIENT_SECRET"],
        "payments": ["DATABASE_URL", "SECRET_KEY", "SERVICE_CLIENT_SECRET"],
        "notifications": ["DATABASE_URL", "SECRET_KEY", "SERVICE_CLIENT_SECRET"],
    }


@overlays
def test_only_auth_mounts_the_signing_key_where_its_setting_points(rendered, overlay):
    mounts = {}
    for d in web_deployments(rendered[overlay]):
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        for mount in container(d, "app")["volumeMounts"]:
            if volumes[mount["name"]].get("secret", {}).get("secretName") == "auth-signing-key":
                key_file = _env(d, "app")["AUTH_SIGNING_KEY_FILE"]
                mounts[d["metadata"]["name"]] = key_file == f"{mount['mountPath']}/signing-key.pem"

    assert mounts == {"auth-blue": True, "auth-green": True}


@overlays
def test_every_setting_in_the_config_map_is_read_by_the_code(rendered, overlay):
    code = "".join(
        (REPO / path).read_text()
        for path in (
            "apps/settings.py",
            "platform/gunicorn.conf.py",
            "apps/core/gunicorn_worker.py",
            "apps/core/tracing.py",
            "apps/core/checks.py",  # OTEL_TRACES_SAMPLER(_ARG): checked there, read by OpenTelemetry's SDK
        )
    )

    unread = [key for key in _config(rendered[overlay]) if f'"{key}"' not in code and f"'{key}'" not in code]

    assert unread == []


@overlays
def test_production_settings_are_safe(rendered, overlay):
    config = _config(rendered[overlay])

    assert (config["DEBUG"], config["SECURE_SSL_REDIRECT"]) == ("false", "false")


@overlays
def test_production_records_a_tenth_of_new_traces_and_the_local_clusters_every_one(rendered, overlay, monkeypatch):
    config = _config(rendered[overlay])
    sampling = {key: value for key, value in config.items() if key.startswith("OTEL_TRACES_SAMPLER")}
    for key, value in sampling.items():
        monkeypatch.setenv(key, value)

    if overlay == "production":
        assert sampling == {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    else:
        assert sampling == {}  # the SDK's default: parentbased_always_on
    assert checks.trace_sampler_check() == []  # what a web pod checks as it starts


@overlays
def test_git_ignores_the_overlays_real_secrets(overlay):
    checked = subprocess.run(
        ["git", "check-ignore", "--quiet", f"deploy/overlays/{overlay}/secrets/auth.env"], cwd=REPO, check=False
    )

    assert checked.returncode == 0


def test_no_real_secret_is_committed():
    tracked = subprocess.run(["git", "ls-files", "deploy"], cwd=REPO, capture_output=True, text=True, check=True)

    assert [path for path in tracked.stdout.splitlines() if "/secrets/" in path or path.endswith(".pem")] == []


@overlays
def test_every_workload_names_its_service_and_component(rendered, overlay):
    unlabelled = [
        w["metadata"]["name"]
        for w in workloads(rendered[overlay])
        if not {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(pod_template(w)["metadata"]["labels"])
    ]

    assert unlabelled == []


@pytest.mark.parametrize(
    ("overlay", "counts"),
    [
        (
            "kind",
            {
                "BackendTrafficPolicy": 1, "ConfigMap": 5, "CronJob": 11, "Deployment": 11, "Gateway": 1,
                "HorizontalPodAutoscaler": 4, "HTTPRoute": 1, "Job": 5, "Namespace": 1, "NetworkPolicy": 17,
                "PersistentVolumeClaim": 1, "PodDisruptionBudget": 8, "PodTemplate": 1, "Role": 2, "Secret": 6,
                "Service": 9, "ServiceAccount": 4, "StatefulSet": 1,
                "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1,
            },
        ),
        (
            "local",
            {
                "BackendTrafficPolicy": 1, "ConfigMap": 5, "CronJob": 11, "Deployment": 11, "Gateway": 1,
                "HorizontalPodAutoscaler": 4, "HTTPRoute": 1, "Job": 5, "Namespace": 1, "NetworkPolicy": 18,
                "PersistentVolume": 2, "PersistentVolumeClaim": 1, "PodDisruptionBudget": 8, "PodTemplate": 1,
                "Role": 2, "Secret": 6, "Service": 9, "ServiceAccount": 4, "StatefulSet": 1,
                "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1,
            },
        ),
        (
            "production",
            {
                "BackendTrafficPolicy": 1, "ConfigMap": 4, "CronJob": 11, "Deployment": 11, "Gateway": 1,
                "HorizontalPodAutoscaler": 4, "HTTPRoute": 2, "Job": 5, "Namespace": 1, "NetworkPolicy": 18,
                "PersistentVolumeClaim": 1, "PodDisruptionBudget": 8, "PodTemplate": 1, "Role": 2, "Secret": 5,
                "Service": 8, "ServiceAccount": 4,
                "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1,
            },
        ),
    ],
)  # fmt: skip
def test_the_overlay_renders_these_objects(rendered, overlay, counts):
    assert dict(Counter(obj["kind"] for obj in rendered[overlay])) == counts


@overlays
def test_the_workloads_the_tool_moves_with_the_live_color_exist_with_those_containers(rendered, overlay):
    found = {
        (follower.kind, follower.name): any(
            c["name"] == follower.container
            for c in pod_template(by_name(rendered[overlay], follower.kind)[follower.name])["spec"]["containers"]
        )
        for followers in FOLLOWERS.values()
        for follower in followers
    }

    assert found == {
        ("CronJob", "auth-prune"): True,
        ("Deployment", "orders-outbox-relay"): True,
        ("CronJob", "orders-payments-settle"): True,
        ("CronJob", "orders-prune"): True,
        ("Deployment", "payments-outbox-relay"): True,
        ("CronJob", "payments-requests-finish"): True,
        ("CronJob", "payments-prune"): True,
        ("Deployment", "notifications-email-worker"): True,
        ("CronJob", "notifications-prune"): True,
    }


@overlays
def test_every_workload_running_a_services_code_outside_the_colors_follows_the_live_color(rendered, overlay):
    """A relay, worker or schedule left on the old image after a promote would run old code against
    the new color's schema and events. (The backups run the database's image: no service's code.)"""
    outside = {
        (workload["kind"], workload["metadata"]["name"])
        for workload in of_kind(rendered[overlay], "Deployment") + of_kind(rendered[overlay], "CronJob")
        if workload not in web_deployments(rendered[overlay])
        and workload["metadata"]["labels"].get("app.kubernetes.io/name") in SERVICES
        and workload["metadata"]["labels"].get("app.kubernetes.io/component") != "backup"
    }
    followed = {(follower.kind, follower.name) for followers in FOLLOWERS.values() for follower in followers}

    assert outside == followed


# PostgreSQL's default: three of them are kept for superusers.
SUPERUSER_RESERVED_CONNECTIONS = 3


def connections_at_most(objects: list[dict]) -> int:
    """Connections the platform can open at once: every gunicorn thread of every web pod keeps one
    (CONN_MAX_AGE), with both colors of a service at its HPA's maximum (the idle color is given the
    live color's size); each relay replica one, each Job and CronJob one."""
    config = _config(objects)
    per_pod = int(config["WEB_CONCURRENCY"]) * int(config["GUNICORN_THREADS"])
    maxima = {
        hpa["metadata"]["name"]: hpa["spec"]["maxReplicas"] for hpa in of_kind(objects, "HorizontalPodAutoscaler")
    }
    web = sum(
        maxima[deployment["metadata"]["labels"]["app.kubernetes.io/name"]] * per_pod
        for deployment in web_deployments(objects)
    )
    relays = sum(
        d["spec"].get("replicas", 1) for d in of_kind(objects, "Deployment") if d not in web_deployments(objects)
    )
    jobs = len(of_kind(objects, "Job")) + len(of_kind(objects, "CronJob"))
    return web + relays + jobs


@pytest.mark.parametrize("overlay", ["kind", "local"])
def test_the_in_cluster_database_admits_every_connection_the_platform_can_open(rendered, overlay):
    (database,) = of_kind(rendered[overlay], "StatefulSet")
    arguments = container(database, "postgresql")["args"]
    settings = dict(argument.split("=", 1) for argument in arguments if "=" in argument)
    assert connections_at_most(rendered[overlay]) <= int(settings["max_connections"]) - SUPERUSER_RESERVED_CONNECTIONS


def test_the_connection_count_of_the_local_overlay_is_its_web_threads_relays_and_jobs(rendered):
    """8 web Deployments x 4 pods at most x 2 workers x 4 threads, 2 relays and the email worker,
    5 Jobs, 11 CronJobs (settle, requests-finish, a prune and a backup per service, the Secrets' backup,
    which opens none and is counted all the same)."""
    assert connections_at_most(rendered["local"]) == 8 * 4 * 2 * 4 + 3 + 5 + 11
