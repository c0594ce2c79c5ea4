"""Fixtures shared by the deploy tests: the rendered overlays, and a fake cluster seeded with them."""

import copy
from datetime import UTC, datetime, timedelta

import pytest

from deploy.bluegreen.cluster import Cluster
from deploy.bluegreen.commands import Context
from deploy.tests.fake_kubernetes import FakeKubernetes
from deploy.tests.rendering import OVERLAYS, render_overlay

LIVE_IMAGE = "registry.example.com/platform:1.4.0"
IDLE_IMAGE = "registry.example.com/platform:1.3.0"
NEW_IMAGE = "registry.example.com/platform:1.5.0"
LIVE_REPLICAS = 3


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Objects of every overlay, by overlay name."""
    workdir = tmp_path_factory.mktemp("render")
    return {overlay: render_overlay(overlay=overlay, workdir=workdir) for overlay in OVERLAYS}


class FakeClock:
    """Wall clock and monotonic clock that move only when the code under test sleeps."""

    def __init__(self):
        self.wall = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
        self.elapsed = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_kubernetes(rendered):
    """A fake API server holding the kind overlay's Services, Deployments and autoscalers: blue live
    on LIVE_IMAGE with LIVE_REPLICAS pods, green idle on IDLE_IMAGE scaled to zero."""
    fake = FakeKubernetes().start()
    for obj in copy.deepcopy(rendered["kind"]):  # the rendered objects are shared by every test
        if obj["kind"] in {"Service", "PodTemplate"}:
            fake.put(obj)
        elif obj["kind"] == "Deployment" and obj["metadata"]["labels"].get("color"):
            live = obj["metadata"]["labels"]["color"] == "blue"
            replicas = LIVE_REPLICAS if live else 0
            obj["spec"]["replicas"] = replicas
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = LIVE_IMAGE if live else IDLE_IMAGE
            obj["status"] = {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
            fake.put(obj)
        elif obj["kind"] == "Deployment":
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = LIVE_IMAGE
            fake.put(obj)
        elif obj["kind"] == "HorizontalPodAutoscaler":
            fake.put(obj)
        elif obj["kind"] == "CronJob":
            obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = LIVE_IMAGE
            fake.put(obj)
    yield fake
    fake.stop()


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def ctx(fake_kubernetes, clock, said) -> Context:
    """The tool's context against the fake cluster, with the fake clock and its output captured."""
    return Context(
        cluster=Cluster(api_client=fake_kubernetes.api_client(), namespace="platform"),
        actor="alice",
        say=said.append,
        now=clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        poll_seconds=2.0,
    )
