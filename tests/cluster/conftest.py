"""The platform on a real Kubernetes cluster, for `make cluster-test`.

The suite talks to the cluster the way an operator and a client do: the official Python client for
the API, `python -m deploy.bluegreen` for releases, and HTTP to the stable Services' ClusterIPs,
reached from this machine through the node (a client outside the cluster, as through a load
balancer), with the Service's in-cluster name as Host. By default the cluster is the local one of
deploy/cluster/ (KUBECONFIG /var/lib/platform-cluster/admin.kubeconfig): if it is not running with
the platform deployed, the session starts it as `make cluster-up` does and stops it again at the
end; a cluster that was already up is left up. With CLUSTER_TEST_KIND=NAME the cluster is that kind
cluster, on which deploy/kind/up.sh deployed the platform (the kind workflow); it is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cluster.kube import (
    CLUSTER_DIR,
    IMAGES_SCRIPT,
    KIND_CLUSTER,
    KUBECONFIG,
    NAMESPACE,
    NEXT_IMAGE,
    NEXT_VERSION,
    REPO,
    SERVICES,
    SLOW_IMAGE,
    Cluster,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


def pytest_configure(config):
    # As in tests/containers: SIGTERM tears the session down like Ctrl-C.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def progress_shown(request) -> Iterator[None]:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        yield


def platform_deployed() -> bool:
    """The cluster answers and every service's live color is available."""
    if not KUBECONFIG.exists():
        return False
    try:
        api = config.new_client_from_config(str(KUBECONFIG))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        for service in SERVICES:
            live = core.read_namespaced_service(service, NAMESPACE, _request_timeout=5).spec.selector["color"]
            deployment = apps.read_namespaced_deployment(f"{service}-{live}", NAMESPACE, _request_timeout=5)
            if not deployment.status.available_replicas:
                return False
    except Exception:
        return False
    return True


def run_script(*command: str, timeout: float) -> None:
    """One of deploy/cluster's scripts, its progress on the terminal; a failure ends the session's setup."""
    environment = {**os.environ, "PYTHON": sys.executable, "KIND_CLUSTER": KIND_CLUSTER or "platform"}
    result = subprocess.run(command, cwd=REPO, env=environment, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"{shlex.join(command)} exited {result.returncode}", pytrace=False)


@pytest.fixture(scope="session")
def cluster(request) -> Iterator[Cluster]:
    started = False
    try:
        if KIND_CLUSTER and not platform_deployed():
            pytest.exit(f"the platform is not deployed on kind cluster {KIND_CLUSTER}: deploy/kind/up.sh first", 1)
        if not platform_deployed():
            if os.geteuid() != 0:
                pytest.exit("the local cluster is not running, and starting it needs root (make cluster-up)", 1)
            started = True
            with progress_shown(request):
                run_script(str(CLUSTER_DIR / "up.sh"), timeout=3600)
                run_script(str(CLUSTER_DIR / "platform.sh"), timeout=1800)
        yield Cluster(api=config.new_client_from_config(str(KUBECONFIG)), kubeconfig=KUBECONFIG)
    finally:
        if started:
            # As `make cluster-down`: nothing of this session's cluster is left, its data included.
            subprocess.run([str(CLUSTER_DIR / "down.sh"), "--purge"], timeout=600, check=False)


@pytest.fixture(scope="session")
def next_image(request, cluster) -> str:
    """A second version of the image, loaded into the node: what every release deploys."""
    with progress_shown(request):
        run_script(str(IMAGES_SCRIPT), "app", NEXT_IMAGE, NEXT_VERSION, timeout=1800)
    return NEXT_IMAGE


@pytest.fixture(scope="session")
def slow_image(request, next_image) -> str:
    """The next version made 0.8 s slower per API request, loaded into the node: a bad release."""
    with progress_shown(request):
        run_script(
            str(IMAGES_SCRIPT),
            "derived",
            SLOW_IMAGE,
            str(REPO / "tests/cluster/slow-release"),
            next_image,
            timeout=600,
        )
    return SLOW_IMAGE
