"""The tool's reads checked against kmock, an independent in-memory Kubernetes emulator (also a fake),
and the reason the other tests use deploy/tests/fake_kubernetes.py for writes: kmock takes a patch
with a stale resourceVersion, so it cannot show that the traffic switch is a compare-and-swap.

kmock is asynchronous; it runs here on its own event loop in a thread, while the official (synchronous)
client talks to it over HTTP as it would to an API server.
"""

import asyncio
import copy
import json
import threading
from collections.abc import Iterator

import kmock
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deploy.bluegreen import commands
from deploy.bluegreen.cluster import Cluster
from deploy.tests.conftest import LIVE_IMAGE

PLURALS = {
    "Service": "v1/services",
    "Deployment": "apps/v1/deployments",
    "HorizontalPodAutoscaler": "autoscaling/v2/horizontalpodautoscalers",
}


@pytest.fixture
def kmock_emulator() -> Iterator[tuple[kmock.KubernetesEmulator, str]]:
    started = threading.Event()
    state: dict = {}

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            state.update(emulator=emulator, url=str(server.url).rstrip("/"), stop=asyncio.Event())
            state["loop"] = asyncio.get_running_loop()
            started.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield state["emulator"], state["url"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def _seed(emulator: kmock.KubernetesEmulator, fake_kubernetes) -> None:
    """Copy the fake cluster's Services, Deployments and autoscaler of auth into kmock, as stored there."""
    for plural, names in (
        ("services", ["auth", "auth-preview"]),
        ("deployments", ["auth-blue", "auth-green"]),
        ("horizontalpodautoscalers", ["auth"]),
    ):
        for name in names:
            obj = copy.deepcopy(fake_kubernetes.get(plural, name))
            emulator.objects[PLURALS[obj["kind"]], "platform", name] = obj


def test_status_reads_the_same_through_kmock_as_through_the_fake(kmock_emulator, fake_kubernetes, clock):
    emulator, url = kmock_emulator
    _seed(emulator, fake_kubernetes)
    through_kmock, through_fake = [], []
    for api_client, lines in (
        (client.ApiClient(client.Configuration(host=url)), through_kmock),
        (fake_kubernetes.api_client(), through_fake),
    ):
        ctx = commands.Context(
            cluster=Cluster(api_client=api_client, namespace="platform"), actor="alice", say=lines.append, now=clock.now
        )
        commands.status(ctx, service="auth")

    assert (through_kmock, through_kmock[1]) == (
        through_fake,
        f"  live blue: 1.4.0 ({LIVE_IMAGE}), 3/3 available, 3 updated, ready",
    )


def _stale_patch(api_client: client.ApiClient) -> int:
    body = {"metadata": {"resourceVersion": "1"}, "spec": {"selector": {"color": "green"}}}
    try:
        response = client.CoreV1Api(api_client).patch_namespaced_service(
            name="auth",
            namespace="platform",
            body=body,
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
    except ApiException as error:
        return error.status
    return response.status


def test_kmock_takes_a_patch_with_a_stale_resource_version(kmock_emulator, fake_kubernetes):
    emulator, url = kmock_emulator
    _seed(emulator, fake_kubernetes)

    assert _stale_patch(client.ApiClient(client.Configuration(host=url))) == 200


def test_the_fake_refuses_a_patch_with_a_stale_resource_version_as_an_api_server_does(fake_kubernetes):
    assert _stale_patch(fake_kubernetes.api_client()) == 409


def test_the_fake_keeps_the_selector_after_a_refused_stale_patch(fake_kubernetes):
    _stale_patch(fake_kubernetes.api_client())

    assert json.dumps(fake_kubernetes.get("services", "auth")["spec"]["selector"], sort_keys=True) == (
        '{"app.kubernetes.io/component": "api", "app.kubernetes.io/name": "auth", "color": "blue"}'
    )
