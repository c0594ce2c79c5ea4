"""Releases under load: for every service, a new version deployed to the idle color, promoted, then
rolled back, and a live pod deleted, while k6 sends a constant rate through all four stable
Services the whole time. Not one request may fail. The switch times and k6's latency around each
switch are written to perf/results/.

The forced rollbacks and the bad releases run for the four services at once, as operators releasing
different services at the same time would: the tool locks a service, not the cluster, and nothing
one service's release does may disturb another's. The good releases run one service after another,
so that each switch's numbers are its own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import subprocess
import time
import traceback
from collections.abc import Callable

import pytest
from kubernetes import client

from tests.cluster.kube import (
    FIRST_IMAGE,
    FIRST_VERSION,
    KIND_CLUSTER,
    NAMESPACE,
    NEXT_VERSION,
    OVERLAY,
    REPO,
    SERVICES,
    kubectl,
    other_color,
    switch_seconds,
    wait_until,
)
from tests.cluster.load import REQUESTS_OF, Load, machine, percentile

# Around a switch: from the moment the command starts to this long after it returns, the time in
# which connections opened before the switch still finish on the old color.
SWITCH_WINDOW_AFTER = 10.0
RESULTS = REPO / "perf" / "results"

RECORD: dict = {"releases": {}, "pod_deletion": None, "drain": None}
# How often a drain asks again for an eviction a PodDisruptionBudget refused (kubectl drain: 5 s).
EVICTION_RETRY_SECONDS = 2.0


@pytest.fixture(scope="module")
def load(cluster, next_image, tmp_path_factory):
    load = Load(cluster=cluster, workdir=tmp_path_factory.mktemp("k6"))
    load.start()
    yield load
    load.kill()


def new_connections_settle_on(cluster, service: str, version: str, *, consecutive: int = 10) -> float:
    """Seconds until `consecutive` new connections in a row reach `version` through the stable
    Service. The tool returns once the EndpointSlices list only the new color; kube-proxy programs
    the node's rules after that (at most one sync a second), and until then a new connection may
    still be sent to the old color, which serves it: nothing fails, this measures how long."""
    started = time.monotonic()
    in_a_row = 0
    while in_a_row < consecutive:
        in_a_row = in_a_row + 1 if cluster.version(service)["version"] == version else 0
        assert time.monotonic() - started < 30, f"new connections to {service} still reach other versions after 30 s"
    return round(time.monotonic() - started, 2)


def gate_line(output: str, service: str) -> str:
    """The release gate's verdict as the tool printed it."""
    marker = f"release gate for {service} "
    line = next((line for line in output.splitlines() if line.startswith(marker)), None)
    assert line is not None, output
    return line.split(": ", 1)[1]


def at_once(run: Callable[[str], None]) -> None:
    """`run(service)` for every service at the same time, each in a thread of its own; then every
    service's failure, not only the first one's."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(SERVICES), thread_name_prefix="release") as pool:
        futures = {service: pool.submit(run, service) for service in SERVICES}
    failures = {service: error for service, future in futures.items() if (error := future.exception()) is not None}
    if failures:
        pytest.fail(
            "\n".join(
                f"--- {service}:\n{''.join(traceback.format_exception(error))}" for service, error in failures.items()
            ),
            pytrace=False,
        )


def drain_one_pod(cluster, service: str, color: str) -> str:
    """Make one pod of a color unready, as a fault outside it would (its readiness answers 503)."""
    pod = cluster.pods(service, color)[0].metadata.name
    cluster.exec(pod, ["touch", "/tmp/draining"])  # noqa: S108 (the pod's drain file, see apps/core/probes.py)
    return pod


@pytest.mark.parametrize("service", SERVICES)
def test_a_release_is_promoted_then_rolled_back_under_load_and_each_command_twice_changes_nothing(
    cluster, load, next_image, service
):
    live = cluster.live_color(service)
    idle = other_color(live)
    before = cluster.version(service)["version"]
    before_image = cluster.image(service, live)
    # The release is the version that is not live: normally the next one; the first one again
    # where a run that stopped halfway left the next one live.
    release_version, release_image = (
        (NEXT_VERSION, next_image) if before != NEXT_VERSION else (FIRST_VERSION, FIRST_IMAGE)
    )

    started = time.time()
    cluster.bluegreen("deploy", service, release_image)
    deployed = time.time()
    assert cluster.version(service)["version"] == before, "deploy must not move traffic"

    # The release gate (on by default) first, then a short watch after the switch.
    promote = cluster.bluegreen("promote", service, "--image", release_image, "--watch", "15")
    promoted = time.time()
    assert cluster.live_color(service) == idle
    gate_verdict = gate_line(promote, service)
    assert gate_verdict.startswith("pass"), promote
    assert f"watch {service} {idle}: healthy for 15 s" in promote, promote
    promote_settled = new_connections_settle_on(cluster, service, release_version)
    promotion = cluster.last_switch(service)
    recorded = (promotion["action"], promotion["image"], promotion["from_image"])
    assert recorded == ("promote", release_image, before_image)
    again = cluster.bluegreen("promote", service, "--image", release_image)
    assert "nothing to do" in again
    assert (cluster.live_color(service), cluster.last_switch(service)) == (idle, promotion)

    rollback = cluster.bluegreen("rollback", service)
    rolled_back = time.time()
    assert cluster.live_color(service) == live
    rollback_settled = new_connections_settle_on(cluster, service, before)
    assert cluster.replicas(service, idle) == 0, "the color rolled back from is scaled to zero"
    back = cluster.last_switch(service)
    assert (back["action"], back["to"], back["image"]) == ("rollback", live, before_image)
    again = cluster.bluegreen("rollback", service)
    assert "is live already" in again
    assert (cluster.live_color(service), cluster.last_switch(service)) == (live, back)

    promote_patch, promote_endpoints = switch_seconds(promote)
    rollback_patch, rollback_endpoints = switch_seconds(rollback)
    RECORD["releases"][service] = {
        "from": f"{live} ({before})",
        "to": f"{idle} ({release_version})",
        "deploy_seconds": round(deployed - started, 1),
        "gate": gate_verdict,
        "promote": {
            "patch_seconds": promote_patch,
            "endpoints_seconds": promote_endpoints,
            "new_connections_seconds": promote_settled,
            "window": (deployed, promoted + SWITCH_WINDOW_AFTER),
        },
        "rollback": {
            "patch_seconds": rollback_patch,
            "endpoints_seconds": rollback_endpoints,
            "new_connections_seconds": rollback_settled,
            "window": (promoted, rolled_back + SWITCH_WINDOW_AFTER),
        },
    }
    assert cluster.image(service, live) == before_image


def settings_overlay(directory, **settings: str):
    """The cluster's overlay with settings changed, as an operator's next commit would change them."""
    directory.mkdir()
    operations = "".join(
        f"      - op: add\n        path: /data/{name}\n        value: {json.dumps(value)}\n"
        for name, value in settings.items()
    )
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        # kustomize takes a relative path only.
        f"resources:\n  - {os.path.relpath(OVERLAY, directory)}\n"
        "patches:\n"
        "  - target:\n      kind: ConfigMap\n      labelSelector: app.kubernetes.io/component=config\n"
        f"    patch: |-\n{operations}"
    )
    return directory


def setting_in(cluster, pods: list, name: str, *, container: str = "app") -> set[str]:
    """The value of a setting in the environment of each running pod (one value when they agree)."""
    return {
        cluster.exec(pod.metadata.name, ["printenv", name], container=container).strip()
        for pod in pods
        if pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
    }


def relay_pods(cluster, service: str) -> list:
    selector = f"app.kubernetes.io/name={service},app.kubernetes.io/component=outbox-relay"
    return cluster.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items


def schedule_settings(cluster, name: str) -> str:
    """The ConfigMap of settings a CronJob's next run reads."""
    cronjob = client.BatchV1Api(cluster.api).read_namespaced_cron_job(name, NAMESPACE)
    return cronjob.spec.job_template.spec.template.spec.containers[0].env_from[0].config_map_ref.name


def test_a_settings_change_is_a_release_deployed_promoted_and_rolled_back_under_load_each_twice(
    cluster, load, tmp_path
):
    """A changed setting (LOG_LEVEL) with the image that is live: `deploy --manifests` puts it on the
    idle color only, `promote` moves traffic and then the relay and the schedules to it, `rollback`
    brings back the settings the live color had, relay and schedules included. Each command run a
    second time changes nothing, and k6 keeps running through all of it."""
    service = "orders"
    live, idle = cluster.live_color(service), other_color(cluster.live_color(service))
    image = cluster.image(service, live)
    overlay = str(settings_overlay(tmp_path / "overlay", LOG_LEVEL="DEBUG"))
    before = {
        "live": setting_in(cluster, cluster.pods(service, live), "LOG_LEVEL"),
        "relay": setting_in(cluster, relay_pods(cluster, service), "LOG_LEVEL", container="relay"),
        "schedule": schedule_settings(cluster, "orders-prune"),
    }
    assert before["live"] == before["relay"] == {"INFO"}

    started = time.time()
    cluster.bluegreen("deploy", service, image, "--manifests", overlay)
    assert cluster.live_color(service) == live
    assert setting_in(cluster, cluster.pods(service, idle), "LOG_LEVEL") == {"DEBUG"}
    assert setting_in(cluster, cluster.pods(service, live), "LOG_LEVEL") == {"INFO"}
    again = cluster.bluegreen("deploy", service, image, "--manifests", overlay)
    assert setting_in(cluster, cluster.pods(service, idle), "LOG_LEVEL") == {"DEBUG"}, again

    promote = cluster.bluegreen("promote", service, "--image", image, "--manifests", overlay, "--watch", "15")
    promoted = time.time()
    assert cluster.live_color(service) == idle
    assert gate_line(promote, service).startswith("pass"), promote
    wait_until(
        lambda: setting_in(cluster, relay_pods(cluster, service), "LOG_LEVEL", container="relay") == {"DEBUG"},
        timeout=120,
        message="the relay runs the promoted release's settings",
    )
    assert schedule_settings(cluster, "orders-prune") != before["schedule"]
    promotion = cluster.last_switch(service)
    again = cluster.bluegreen("promote", service, "--image", image, "--manifests", overlay)
    assert "nothing to do" in again
    assert cluster.last_switch(service) == promotion

    cluster.bluegreen("rollback", service)
    rolled_back = time.time()
    assert cluster.live_color(service) == live
    assert setting_in(cluster, cluster.pods(service, live), "LOG_LEVEL") == {"INFO"}
    wait_until(
        lambda: setting_in(cluster, relay_pods(cluster, service), "LOG_LEVEL", container="relay") == {"INFO"},
        timeout=120,
        message="the relay is back on the settings it ran before",
    )
    assert schedule_settings(cluster, "orders-prune") == before["schedule"]
    back = cluster.last_switch(service)
    again = cluster.bluegreen("rollback", service)
    assert "is live already" in again
    assert cluster.last_switch(service) == back
    RECORD["settings_release"] = {
        "service": service,
        "setting": "LOG_LEVEL=DEBUG",
        "window": (started, rolled_back + SWITCH_WINDOW_AFTER),
        "promote_seconds": round(promoted - started, 1),
    }


def test_a_rollback_to_a_degraded_previous_color_needs_force_under_load_every_service_at_once(
    cluster, load, next_image
):
    """The previous color has a pod that fails readiness for a reason outside it: a plain rollback
    refuses and moves nothing; a forced one switches, and the ready pods carry the traffic."""
    at_once(lambda service: forced_rollback(cluster, next_image, service))


def forced_rollback(cluster, next_image: str, service: str) -> None:
    live = cluster.live_color(service)
    idle = other_color(live)
    before = cluster.version(service)["version"]
    release_version, release_image = (
        (NEXT_VERSION, next_image) if before != NEXT_VERSION else (FIRST_VERSION, FIRST_IMAGE)
    )
    cluster.bluegreen("deploy", service, release_image)
    # This release passed the gate in the test above; what is tested here is the rollback.
    cluster.bluegreen("promote", service, "--image", release_image, "--skip-gate", "--watch", "0")
    new_connections_settle_on(cluster, service, release_version)

    drained = drain_one_pod(cluster, service, live)
    wait_until(
        lambda: not cluster.fully_available(service, live),
        timeout=60,
        message=f"{drained} unready, so {service}-{live} is not fully available",
    )
    code, refused = cluster.bluegreen_exit("rollback", service)
    assert (code, cluster.live_color(service)) == (1, idle), refused
    assert "roll back with --force" in refused

    started = time.time()
    forced = cluster.bluegreen("rollback", service, "--force")
    RECORD.setdefault("forced_rollbacks", {})[service] = {
        "seconds": round(time.time() - started, 1),
        "patch_seconds": switch_seconds(forced)[0],
        "window": (started, time.time() + SWITCH_WINDOW_AFTER),
    }
    assert cluster.live_color(service) == live
    new_connections_settle_on(cluster, service, before)
    cluster.exec(drained, ["rm", "-f", "/tmp/draining"])  # noqa: S108 (the pod's drain file)
    wait_until(lambda: cluster.fully_available(service, live), timeout=60, message=f"{service}-{live} ready again")


def test_a_slow_release_is_refused_by_the_gate_and_rolled_back_by_the_watch_under_load_every_service_at_once(
    cluster, load, slow_image
):
    """A release whose every API request takes 0.8 s longer: deployed, it passes its smoke test; the
    release gate refuses it (its reads are slower than the live color's) and nothing moves; promoted
    with --skip-gate, as if the gate had missed it, the watch sees it degrade under the real traffic
    and rolls back by itself (exit 4). k6 keeps running: slower for those seconds, never failing."""
    at_once(lambda service: slow_release(cluster, slow_image, service))


def slow_release(cluster, slow_image: str, service: str) -> None:
    live = cluster.live_color(service)
    idle = other_color(live)
    before = cluster.version(service)["version"]
    cluster.bluegreen("deploy", service, slow_image)

    code, refused = cluster.bluegreen_exit("promote", service, "--image", slow_image, "--watch", "0")
    assert (code, cluster.live_color(service)) == (1, live), refused
    assert f"{service} {idle} failed the release gate" in refused, refused
    verdict = gate_line(refused, service)

    started = time.time()
    code, output = cluster.bluegreen_exit(
        "--actor", "cluster-test", "promote", service, "--image", slow_image, "--skip-gate", "--watch", "120"
    )
    ended = time.time()
    assert code == 4, output
    assert f"rolled back to {live}" in output, output
    assert cluster.live_color(service) == live
    assert cluster.last_switch(service)["action"] == "rollback"
    new_connections_settle_on(cluster, service, before)
    ticks = [line for line in output.splitlines() if line.startswith(f"watch {service} {idle}: ")]
    RECORD.setdefault("bad_releases", {})[service] = {
        "gate": verdict,
        "seconds": round(ended - started, 1),
        "ticks": ticks,
        "window": (started, ended + SWITCH_WINDOW_AFTER),
    }


def cluster_state(cluster) -> dict:
    """What re-applying the manifests must never move: live colors, every color's image, autoscalers."""
    return {
        service: (
            cluster.live_color(service),
            cluster.image(service, "blue"),
            cluster.image(service, "green"),
            cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(
                service, NAMESPACE
            ).spec.scale_target_ref.name,
        )
        for service in SERVICES
    }


def first_apply_jobs(cluster) -> dict[str, tuple[str, int | None]]:
    """The first apply's Jobs (migrations, service clients): uid and time-to-live by name."""
    return {
        job.metadata.name: (job.metadata.uid, job.spec.ttl_seconds_after_finished)
        for job in client.BatchV1Api(cluster.api).list_namespaced_job(NAMESPACE).items
        if job.metadata.name.endswith("-migrate") or job.metadata.name == "auth-service-clients"
    }


@pytest.mark.parametrize(
    "apply",
    [
        ["apply", "-k"],  # client-side: a 3-way merge that would set every image back to the overlay's
        ["apply", "--server-side", "--force-conflicts", "--field-manager=platform", "-k"],
    ],
    ids=["client-side", "server-side-forced"],
)
def test_reapplying_the_manifests_after_releases_moves_neither_traffic_nor_images(cluster, load, apply):
    """After the releases, idle colors run other images than the overlay names. Applying it again,
    even forcing the conflicts, is refused for exactly those fields, and nothing moves. The first
    apply's Jobs are kept with no time to live, so the apply finds them and starts no new one."""
    before = cluster_state(cluster)
    jobs = first_apply_jobs(cluster)
    assert any(blue != green for _, blue, green, _ in before.values()), "a release left another image on a color"
    assert sorted(jobs) == sorted([*(f"{service}-migrate" for service in SERVICES), "auth-service-clients"])
    assert {ttl for _, ttl in jobs.values()} == {None}

    result = subprocess.run(
        [str(kubectl()), "--kubeconfig", str(cluster.kubeconfig), *apply, str(OVERLAY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "denied request: the pod template of Deployment" in result.stderr
    assert cluster_state(cluster) == before
    assert first_apply_jobs(cluster) == jobs


def test_a_live_pod_deleted_under_load_is_replaced(cluster, load):
    service = "orders"
    live = cluster.live_color(service)
    deployment = f"{service}-{live}"
    victim = cluster.pods(service, live)[0].metadata.name
    started = time.time()
    cluster.core.delete_namespaced_pod(victim, NAMESPACE)

    def replaced():
        pods = cluster.pods(service, live)
        ready = [
            pod
            for pod in pods
            if pod.metadata.name != victim
            and pod.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        ]
        wanted = cluster.apps.read_namespaced_deployment(deployment, NAMESPACE).spec.replicas
        return len(ready) >= wanted and victim not in {pod.metadata.name for pod in pods}

    wait_until(replaced, timeout=120, message=f"{victim} gone and {deployment} back to full strength")
    finished = time.time()
    time.sleep(SWITCH_WINDOW_AFTER)
    RECORD["pod_deletion"] = {
        "pod": victim,
        "replaced_seconds": round(finished - started, 1),
        "window": (started, finished + SWITCH_WINDOW_AFTER),
    }


def deployment_pods(cluster) -> list:
    """Every running pod of the platform's Deployments: both services' colors, the relays, the worker."""
    return [
        pod
        for pod in cluster.core.list_namespaced_pod(NAMESPACE).items
        if pod.metadata.deletion_timestamp is None
        and any(owner.kind == "ReplicaSet" for owner in pod.metadata.owner_references or [])
    ]


def test_a_nodes_worth_of_pods_evicted_as_a_drain_does_with_the_pdbs_in_force(cluster, load):
    """`kubectl drain`'s evictions without its cordon: the local cluster has one node, so the
    replacements start on it, as they would on the other nodes of a real cluster. Every pod of the
    platform's Deployments is evicted through the Eviction API at once; the API server refuses (429)
    each eviction that would take a service below its PodDisruptionBudget (one web pod unavailable at
    most), and the drill asks again every 2 s, as kubectl drain does, until every one is gone. (The
    database is a single pod, left out: losing it is the PostgreSQL restart drill, perf/drills.py.)"""
    victims = {pod.metadata.name for pod in deployment_pods(cluster)}
    web = {
        pod.metadata.name
        for pod in deployment_pods(cluster)
        if pod.metadata.labels.get("app.kubernetes.io/component") == "api"
    }
    assert len(web) >= 2 * len(SERVICES), sorted(victims)
    started = time.time()
    pending, refused, evicted_at = set(victims), 0, {}
    while pending:
        assert time.time() - started < 600, f"still refused after 600 s: {sorted(pending)}"
        for name in sorted(pending):
            try:
                cluster.core.create_namespaced_pod_eviction(
                    name, NAMESPACE, client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE))
                )
            except client.ApiException as error:
                if error.status == 429:  # the PodDisruptionBudget's answer: not now
                    refused += 1
                    continue
                if error.status != 404:
                    raise
            pending.discard(name)
            evicted_at[name] = round(time.time() - started, 1)
        if pending:
            time.sleep(EVICTION_RETRY_SECONDS)

    def back():
        remaining = {pod.metadata.name for pod in cluster.core.list_namespaced_pod(NAMESPACE).items}
        live = all(cluster.fully_available(service, cluster.live_color(service)) for service in SERVICES)
        return live and not victims & remaining

    wait_until(back, timeout=300, interval=2, message="every evicted pod gone and every live color at full strength")
    finished = time.time()
    time.sleep(SWITCH_WINDOW_AFTER)
    RECORD["drain"] = {
        "pods": len(victims),
        "web_pods": len(web),
        "refused_by_pdbs": refused,
        "last_eviction_seconds": max(evicted_at.values()),
        "seconds": round(finished - started, 1),
        "window": (started, finished + SWITCH_WINDOW_AFTER),
    }
    # Two web pods per live color and one unavailable at most: the second of each was refused first.
    assert refused >= len(SERVICES)


def test_no_request_failed_through_the_releases_and_the_pod_deletion(cluster, load):
    result = load.stop()
    path = record_results(cluster, result)
    failed = [(r.name, r.status, r.error_code, r.problem_code, r.request_id) for r in result.failed]
    if failed:
        diagnosis = cluster.diagnosis([r.request_id for r in result.failed])
        (load.workdir / "diagnosis.txt").write_text(diagnosis + "\n")
        pytest.fail(
            f"{len(failed)} requests failed (k6 counts {result.k6_failed_count()}), see {path}: {failed[:20]}\n"
            f"what the cluster logged about them ({load.workdir / 'diagnosis.txt'}):\n{diagnosis[:12000]}",
            pytrace=False,
        )
    assert result.k6_failed_count() == 0, f"see {path}"
    assert len(result.requests) > 500
    assert len(RECORD["releases"]) == len(SERVICES), "every service's release ran"
    assert len(RECORD.get("forced_rollbacks", {})) == len(SERVICES), "every service's forced rollback ran"
    assert len(RECORD.get("bad_releases", {})) == len(SERVICES), "every service's bad release ran"


def record_results(cluster, result) -> str:
    """perf/results/<date>-cluster-releases.md and .json: what was measured, on what machine."""
    for release in RECORD["releases"].values():
        for switch in ("promote", "rollback"):
            release[switch]["k6"] = result.window(*release[switch]["window"])
    # These ran for the four services at once: each row counts its own service's requests.
    for service, forced in RECORD.get("forced_rollbacks", {}).items():
        forced["k6"] = result.window(*forced["window"], names=REQUESTS_OF[service])
    for service, bad in RECORD.get("bad_releases", {}).items():
        bad["k6"] = result.window(*bad["window"], names=REQUESTS_OF[service])
    for fault in ("pod_deletion", "drain", "settings_release"):
        if RECORD.get(fault):
            RECORD[fault]["k6"] = result.window(*RECORD[fault]["window"])
    durations = [r.duration_ms for r in result.requests]
    RECORD["load"] = {
        "requests": len(result.requests),
        "failed": len(result.failed),
        "failures": [dataclasses.asdict(r) for r in result.failed],
        "k6_failed": result.k6_failed_count(),
        "seconds": round(result.stopped_at - result.requests[0].at, 1) if result.requests else 0,
        "p95_ms": percentile(durations, 0.95),
        "p99_ms": percentile(durations, 0.99),
    }
    RECORD["machine"] = machine(cluster)
    day = datetime.datetime.now(tz=datetime.UTC).date().isoformat()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{day}-cluster-releases.json").write_text(json.dumps(RECORD, indent=2, default=str) + "\n")
    markdown = RESULTS / f"{day}-cluster-releases.md"
    markdown.write_text(report(RECORD, day))
    return str(markdown.relative_to(REPO))


def report(record: dict, day: str) -> str:
    m = record["machine"]
    lines = [
        f"# Releases and rollbacks under load on the {'kind' if KIND_CLUSTER else 'local'} cluster, {day}",
        "",
        f"Recorded by `make cluster-test` (tests/cluster/test_releases.py) at commit `{m['commit']}`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in m.items() if key != "commit"),
        "",
        *(
            [
                f"One machine ran everything: the kind cluster {KIND_CLUSTER} of deploy/kind/up.sh (its nodes",
                "containers) and k6, which reached the stable Services through the control-plane node.",
            ]
            if KIND_CLUSTER
            else [
                "One machine ran everything: the single-node cluster of deploy/cluster/ (control plane, node, the",
                "platform's pods and PostgreSQL) and k6, which reached the stable Services through the node.",
            ]
        ),
        "",
        "## Load",
        "",
        "perf/k6/cluster.js at a constant 6 iterations/s: four token-verified reads (an order, the caller,",
        "the inbox, a payment: one per service) and an order placement every sixth iteration.",
        "",
        f"- requests judged: {record['load']['requests']} over {record['load']['seconds']} s; failed: "
        f"**{record['load']['failed']}** (k6's own count: {record['load']['k6_failed']})",
        f"- latency over the whole run: p95 {record['load']['p95_ms']} ms, p99 {record['load']['p99_ms']} ms",
        "",
        "## Switches",
        "",
        "Patch: the stable Service's selector patch (compare-and-swap). Endpoints: from the patch until the",
        "Service's EndpointSlices list only the new color's ready pods (both measured by the tool). New",
        "connections: from the command's return until ten new connections in a row reached the new version",
        "(kube-proxy programs the node after the EndpointSlices change). k6 columns: the requests that",
        f"ended from the command's start until {SWITCH_WINDOW_AFTER:.0f} s after it returned.",
        "",
        "| service | switch | patch s | endpoints s | new connections s | k6 requests | failed | p95 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for service, release in record["releases"].items():
        for switch in ("promote", "rollback"):
            data, k6 = release[switch], release[switch].get("k6", {})
            lines.append(
                f"| {service} | {switch} ({release['to'] if switch == 'promote' else release['from']}) "
                f"| {data['patch_seconds']:.3f} | {data['endpoints_seconds']:.3f} | {data['new_connections_seconds']}"
                f" | {k6.get('requests')} "
                f"| {k6.get('failed')} | {k6.get('p95_ms')} | {k6.get('max_ms')} |"
            )
    if record.get("forced_rollbacks"):
        lines += [
            "",
            "Forced rollbacks (one pod of the previous color failing readiness; a plain rollback refused first),",
            "the four services at once; k6 columns: the service's own requests (orders: its reads and",
            f"placements) from the command's start until {SWITCH_WINDOW_AFTER:.0f} s after it returned:",
            "",
            "| service | command s | patch s | k6 requests | failed | p95 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for service, forced in record["forced_rollbacks"].items():
            k6 = forced.get("k6", {})
            lines.append(
                f"| {service} | {forced['seconds']} | {forced['patch_seconds']:.3f} | {k6.get('requests')} "
                f"| {k6.get('failed')} | {k6.get('p95_ms')} |"
            )
    lines += ["", "Deploy (migration Job, idle color rolled out, smoke test through the preview Service):", ""]
    lines += [f"- {service}: {release['deploy_seconds']} s" for service, release in record["releases"].items()]
    lines += ["", "The release gate on each of these releases (idle and live color, the same reads side by side):", ""]
    lines += [f"- {service}: {release.get('gate')}" for service, release in record["releases"].items()]
    if record.get("bad_releases"):
        lines += [
            "",
            "## A bad release: every API request 0.8 s slower",
            "",
            "tests/cluster/slow-release, released for the four services at once: deployed, it passes its smoke",
            "test. The release gate refused it (first line); promoted with --skip-gate, the watch read the new",
            "color's metrics from Prometheus every 5 s (30 s windows) and rolled back by itself after two",
            "degraded windows in a row. Seconds: from the promote command's start (switch included) until it",
            "returned after the rollback; k6 columns: the service's own requests in that time and "
            f"{SWITCH_WINDOW_AFTER:.0f} s after.",
            "",
            "| service | switch, watch and rollback s | k6 requests | failed | p95 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for service, bad in record["bad_releases"].items():
            k6 = bad.get("k6", {})
            lines.append(
                f"| {service} | {bad['seconds']} | {k6.get('requests')} | {k6.get('failed')} | {k6.get('p95_ms')} "
                f"| {k6.get('max_ms')} |"
            )
        lines.append("")
        for service, bad in record["bad_releases"].items():
            lines += [f"- {service}, gate: {bad['gate']}", *(f"  - {tick}" for tick in bad["ticks"])]
    if record["pod_deletion"]:
        deletion = record["pod_deletion"]
        k6 = deletion.get("k6", {})
        lines += [
            "",
            "## A live pod deleted",
            "",
            f"`{deletion['pod']}` deleted (default grace period): the Deployment was back to full strength,",
            f"the old pod gone, after {deletion['replaced_seconds']} s; k6 in that time and {SWITCH_WINDOW_AFTER:.0f} s"
            f" after: {k6.get('requests')} requests, {k6.get('failed')} failed, p95 {k6.get('p95_ms')} ms.",
        ]
    if record.get("settings_release"):
        settings = record["settings_release"]
        k6 = settings.get("k6", {})
        lines += [
            "",
            "## A settings change released like an image",
            "",
            f"{settings['service']}, same image, {settings['setting']}: `deploy --manifests` to the idle color,",
            "`promote --manifests` (gate, switch, 15 s watch; promoted "
            f"{settings['promote_seconds']} s after the deploy started),",
            "the relay and the schedules moved to the new settings, then `rollback` back to the old ones, each",
            f"command twice. k6 from the deploy to {SWITCH_WINDOW_AFTER:.0f} s after the rollback:",
            f"{k6.get('requests')} requests, {k6.get('failed')} failed, p95 {k6.get('p95_ms')} ms.",
        ]
    if record["drain"]:
        drain = record["drain"]
        k6 = drain.get("k6", {})
        lines += [
            "",
            "## A node's worth of pods drained, the PodDisruptionBudgets in force",
            "",
            f"Every pod of the platform's Deployments ({drain['pods']}, {drain['web_pods']} of them web",
            "pods) evicted through the Eviction API at once, as `kubectl drain` does, each refused eviction",
            f"asked again every {EVICTION_RETRY_SECONDS:.0f} s. The budgets refused {drain['refused_by_pdbs']}"
            f" evictions; the last pod was evicted after {drain['last_eviction_seconds']} s, every live color",
            f"was back at full strength after {drain['seconds']} s. k6 in that time and",
            f"{SWITCH_WINDOW_AFTER:.0f} s after: {k6.get('requests')} requests, {k6.get('failed')} failed,"
            f" p95 {k6.get('p95_ms')} ms, max {k6.get('max_ms')} ms.",
        ]
    return "\n".join(lines) + "\n"
