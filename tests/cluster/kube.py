"""How the cluster tests reach the cluster: the API through the official client, the blue/green tool
as an operator runs it, and the stable Services over HTTP by ClusterIP with their in-cluster names."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from kubernetes import client
from kubernetes.stream import stream

REPO = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO / "deploy" / "cluster"
STATE_DIR = Path(os.environ.get("PLATFORM_CLUSTER_STATE", "/var/lib/platform-cluster"))
# The kind cluster the platform was deployed to by deploy/kind/up.sh (the kind workflow,
# .github/workflows/kind.yml), or "" for the local cluster of deploy/cluster/, the default. The suite
# is the same; what differs is how images reach the nodes, which overlay runs, where volumes are.
KIND_CLUSTER = os.environ.get("CLUSTER_TEST_KIND", "")
KUBECONFIG = Path(
    os.environ.get(
        "CLUSTER_TEST_KUBECONFIG", Path.home() / ".kube" / "config" if KIND_CLUSTER else STATE_DIR / "admin.kubeconfig"
    )
)
OVERLAY = REPO / "deploy" / "overlays" / ("kind" if KIND_CLUSTER else "local")
# Builds an image and loads it into the cluster's nodes: `app IMAGE VERSION` or `derived IMAGE DIR FROM`.
IMAGES_SCRIPT = REPO / "deploy" / "kind" / "images.sh" if KIND_CLUSTER else CLUSTER_DIR / "images.sh"
NAMESPACE = "platform"
SERVICES = ("auth", "orders", "payments", "notifications")
COLORS = ("blue", "green")
# The image `make cluster-up` deploys first, and the version every release of the suite deploys to
# the idle color, then promotes and rolls back.
FIRST_IMAGE = "platform-app:dev"
FIRST_VERSION = "dev"
NEXT_IMAGE = "platform-app:next"
NEXT_VERSION = "next"
# The next version with a performance regression (tests/cluster/slow-release): what the release
# gate must refuse and the watch after a switch must roll back.
SLOW_IMAGE = "platform-app:slow"
# How long one request of the load may take (perf/k6/lib.js's REQUEST_TIMEOUT).
LOAD_REQUEST_TIMEOUT_SECONDS = 30


def kubectl() -> Path:
    """The cluster's own kubectl, built with it (deploy/cluster/lib.sh's BIN_DIR); on kind, the
    machine's."""
    if KIND_CLUSTER:
        return Path(shutil.which("kubectl") or "kubectl")
    found = subprocess.run(
        ["bash", "-c", f"source {CLUSTER_DIR / 'lib.sh'} && echo $BIN_DIR/kubectl"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


def other_color(color: str) -> str:
    return "green" if color == "blue" else "blue"


def host_name(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


class ServiceSession(requests.Session):
    """HTTP to Services by ClusterIP with the Service's name as Host, as the platform's settings
    (ALLOWED_HOSTS) expect of every caller inside the cluster."""

    def __init__(self, hosts_by_address: dict[str, str]):
        super().__init__()
        self.hosts_by_address = hosts_by_address

    def request(self, method, url, *args, headers=None, **kwargs):
        headers = {"Host": self.hosts_by_address[urlsplit(url).hostname], **(headers or {})}
        return super().request(method, url, *args, headers=headers, **kwargs)


@dataclass
class Cluster:
    api: client.ApiClient
    kubeconfig: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def autoscaling(self) -> client.AutoscalingV2Api:
        return client.AutoscalingV2Api(self.api)

    def live_color(self, service: str) -> str:
        return self.core.read_namespaced_service(service, NAMESPACE).spec.selector["color"]

    def cluster_ip(self, service: str) -> str:
        return self.core.read_namespaced_service(service, NAMESPACE).spec.cluster_ip

    @property
    def urls(self) -> dict[str, str]:
        return {service: f"http://{self.cluster_ip(service)}" for service in SERVICES}

    def session(self) -> ServiceSession:
        return ServiceSession({self.cluster_ip(service): host_name(service) for service in SERVICES})

    def version(self, service: str) -> dict:
        """/version through the stable Service, on a new connection (kube-proxy picks a pod per connection).

        Given as long as a request of the load (perf/k6/lib.js's REQUEST_TIMEOUT): on a slow node, at a
        moment when several pods start at once, a read that waits is the same slow answer k6 counts as
        served, not a failed release."""
        with self.session() as session:
            return session.get(f"{self.urls[service]}/version", timeout=LOAD_REQUEST_TIMEOUT_SECONDS).json()

    def bluegreen(self, *arguments: str, timeout: float = 900) -> str:
        """Runs the blue/green tool as an operator would; its output, or a failure with it."""
        command = [
            sys.executable,
            "-m",
            "deploy.bluegreen",
            "--kubeconfig",
            str(self.kubeconfig),
            "--actor",
            "cluster-test",
            *arguments,
        ]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{shlex.join(arguments)} exited {result.returncode}:\n{output}"
        return output

    def bluegreen_exit(self, *arguments: str, timeout: float = 900) -> tuple[int, str]:
        """The tool's exit code and output, for the commands that must refuse."""
        command = [sys.executable, "-m", "deploy.bluegreen", "--kubeconfig", str(self.kubeconfig), *arguments]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
        return result.returncode, result.stdout + result.stderr

    def deployment(self, service: str, color: str) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(f"{service}-{color}", NAMESPACE)

    def image(self, service: str, color: str) -> str:
        containers = self.deployment(service, color).spec.template.spec.containers
        return next(container.image for container in containers if container.name == "app")

    def replicas(self, service: str, color: str) -> int:
        return self.deployment(service, color).spec.replicas

    def fully_available(self, service: str, color: str) -> bool:
        deployment = self.deployment(service, color)
        wanted, status = deployment.spec.replicas, deployment.status
        return bool(wanted) and (status.available_replicas or 0) == wanted == (status.updated_replicas or 0)

    def autoscaler_target(self, service: str) -> str:
        return self.autoscaling.read_namespaced_horizontal_pod_autoscaler(service, NAMESPACE).spec.scale_target_ref.name

    def last_switch(self, service: str) -> dict:
        """The switch the tool recorded last on the stable Service."""
        annotations = self.core.read_namespaced_service(service, NAMESPACE).metadata.annotations or {}
        return json.loads(annotations.get("bluegreen.platform.dev/last-switch", "{}"))

    def exec(self, pod: str, command: list[str], *, container: str = "app") -> str:
        """A command run in one of a pod's containers (the app's by default), through the API server;
        its output. The websocket goes through an API client of its own: `stream` swaps the request
        call method of the client it is given while it runs, which would send the REST calls of other
        threads (releases of several services at once) down the websocket too."""
        with client.ApiClient(self.api.configuration) as own:
            return stream(
                client.CoreV1Api(own).connect_get_namespaced_pod_exec,
                pod,
                NAMESPACE,
                container=container,
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
            )

    def diagnosis(self, request_ids: list[str], *, tail: int = 40) -> str:
        """What the cluster knows about failed requests: every log line of every pod in the namespace
        (previous containers included) that names one of `request_ids`, the last `tail` lines of the
        database's log, pods that restarted, and the namespace's Warning events."""
        lines = []
        for pod in self.core.list_namespaced_pod(NAMESPACE).items:
            name = pod.metadata.name
            for status in pod.status.container_statuses or []:
                if status.restart_count:
                    lines.append(f"restarted: {name}/{status.name} x{status.restart_count}")
                for previous in (False, True) if status.restart_count else (False,):
                    try:
                        log = self.core.read_namespaced_pod_log(
                            name, NAMESPACE, container=status.name, previous=previous, _request_timeout=30
                        )
                    except client.ApiException as error:
                        lines.append(f"{name}/{status.name}: no log ({error.status})")
                        continue
                    label = f"{name}/{status.name}{' (previous)' if previous else ''}"
                    own = log.splitlines()
                    if name.startswith("postgresql-"):
                        lines += [f"{label}: {line}" for line in own[-tail:]]
                    lines += [f"{label}: {line}" for line in own if any(rid and rid in line for rid in request_ids)]
        for event in self.core.list_namespaced_event(NAMESPACE).items:
            if event.type == "Warning":
                when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
                lines.append(
                    f"event {when} {event.involved_object.kind}/{event.involved_object.name}: "
                    f"{event.reason}: {event.message}"
                )
        return "\n".join(lines)

    def pods(self, service: str, color: str) -> list[client.V1Pod]:
        selector = f"app.kubernetes.io/name={service},app.kubernetes.io/component=api,color={color}"
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items


def wait_until(condition, *, timeout: float, interval: float = 1.0, message: str):
    """Poll `condition()` until it is truthy (returned) or `timeout` seconds passed (a failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {message}", pytrace=False)
        time.sleep(interval)


SWITCH_LINE = re.compile(r"selector switched (\w+) -> (\w+) \(([^)]*)\) in ([0-9.]+) s")
ENDPOINTS_LINE = re.compile(r"endpoints list only (\w+) pods ([0-9.]+) s after the switch")


def switch_seconds(output: str) -> tuple[float, float]:
    """(selector patch, until the endpoints list only the new color) from the tool's output."""
    patched, settled = SWITCH_LINE.search(output), ENDPOINTS_LINE.search(output)
    assert patched and settled, output
    return float(patched.group(4)), float(settled.group(2))
