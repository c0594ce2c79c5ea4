"""The blue/green operations driving the real kubernetes client against the fake API server.

The fake cluster starts with the kind overlay's Services and Deployments: blue live (LIVE_IMAGE, three
pods), green idle (IDLE_IMAGE, zero pods). See conftest.py and fake_kubernetes.py.
"""

import json

import pytest

from deploy.bluegreen import commands, gate
from deploy.bluegreen.decisions import (
    HISTORY_ANNOTATION,
    LAST_SWITCH_ANNOTATION,
    BlueGreenError,
    GateThresholds,
    TrafficMovedError,
)
from deploy.bluegreen.releases import configuration_id
from deploy.tests.conftest import IDLE_IMAGE, LIVE_IMAGE, LIVE_REPLICAS, NEW_IMAGE
from deploy.tests.fake_prometheus import FakePrometheus


def _selector_color(fake, name: str) -> str:
    return fake.get("services", name)["spec"]["selector"]["color"]


def _image(fake, name: str) -> str:
    return fake.get("deployments", name)["spec"]["template"]["spec"]["containers"][0]["image"]


def _replicas(fake, name: str) -> int:
    return fake.get("deployments", name)["spec"]["replicas"]


def _set_image(fake, name: str, image: str) -> None:
    fake.touch(
        "deployments", name, patch={"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    )


def _degrade(fake, name: str) -> None:
    """One pod of the Deployment's stays unavailable (the fake's controller leaves it so)."""
    fake.stuck.add(name)
    fake.touch("deployments", name, patch={"status": {"availableReplicas": 1}})


def _with_setting(rendered: dict, key: str, value: str) -> list[dict]:
    """The kind overlay's objects with one setting changed, as kustomize makes it: a new
    platform-config-<hash> (here -<value>) that every workload reading the settings names."""
    objects = json.loads(json.dumps(rendered["kind"]))
    (config_map,) = [o for o in objects if o["metadata"]["name"].startswith("platform-config-")]
    old_name, new_name = config_map["metadata"]["name"], f"platform-config-{value.lower()}"
    config_map["metadata"]["name"] = new_name
    config_map["data"][key] = value
    text = json.dumps(objects).replace(f'"{old_name}"', f'"{new_name}"')
    return json.loads(text)


def _env_config(template: dict) -> str:
    return template["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]


def _web_template(fake, name: str) -> dict:
    return fake.get("deployments", name)["spec"]["template"]


def _follower_templates(fake) -> dict[str, dict]:
    return {
        "orders-outbox-relay": fake.get("deployments", "orders-outbox-relay")["spec"]["template"],
        "orders-payments-settle": fake.get("cronjobs", "orders-payments-settle")["spec"]["jobTemplate"]["spec"][
            "template"
        ],
        "orders-prune": fake.get("cronjobs", "orders-prune")["spec"]["jobTemplate"]["spec"]["template"],
    }


def _lease_holder(fake, service: str) -> str | None:
    return fake.get("leases", f"bluegreen-{service}")["spec"].get("holderIdentity")


def _promoted(ctx, fake) -> None:
    """orders green deployed with NEW_IMAGE and promoted: green live, blue idle but up."""
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)
    commands.promote(ctx, service="orders", image=NEW_IMAGE)


# --- the autoscaler follows the live color -------------------------------------------------------------------


def _autoscaled(fake, service: str) -> str:
    return fake.get("horizontalpodautoscalers", service)["spec"]["scaleTargetRef"]["name"]


def test_promote_moves_the_autoscaler_to_the_new_live_color(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert _autoscaled(fake_kubernetes, "orders") == "orders-green"


def test_after_promote_the_old_color_keeps_its_size_with_no_autoscaler_on_it(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert (_replicas(fake_kubernetes, "orders-blue"), _autoscaled(fake_kubernetes, "orders")) == (
        LIVE_REPLICAS,
        "orders-green",
    )


def test_rollback_moves_the_autoscaler_back(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.rollback(ctx, service="orders")

    assert _autoscaled(fake_kubernetes, "orders") == "orders-blue"


def test_the_autoscaler_moves_when_its_controller_writes_its_status_in_between(ctx, fake_kubernetes, said):
    """The HPA controller updates an autoscaler's status every sync (a new resourceVersion each
    time), often right after a switch: the tool's patch meets a conflict, reads again and moves it."""
    _promoted(ctx, fake_kubernetes)
    status_writes = []

    def controller_syncs_first(method, path):
        if method == "PATCH" and path.endswith("/horizontalpodautoscalers/orders") and len(status_writes) < 2:
            status_writes.append(path)
            fake_kubernetes.touch("horizontalpodautoscalers", "orders", patch={"status": {"currentReplicas": 3}})

    fake_kubernetes.before_request = controller_syncs_first
    commands.rollback(ctx, service="orders")

    assert (len(status_writes), _autoscaled(fake_kubernetes, "orders")) == (2, "orders-blue")
    assert not any("still scales" in line for line in said), said


def test_deploy_leaves_the_autoscaler_on_the_live_color(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert (_autoscaled(fake_kubernetes, "orders"), fake_kubernetes.writes("horizontalpodautoscalers")) == (
        "orders-blue",
        [],
    )


def test_an_autoscaler_that_could_not_move_says_traffic_moved_and_how_to_fix_it(ctx, fake_kubernetes, said):
    fake_kubernetes.objects.pop(("horizontalpodautoscalers", "platform", "orders"))
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    with pytest.raises(TrafficMovedError):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert any(line.startswith("warning: HorizontalPodAutoscaler orders still scales the old color") for line in said)


# --- deploy -----------------------------------------------------------------------------------------------


def test_deploy_runs_the_migration_before_touching_the_idle_color(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    writes = [(method, path) for method, path, _ in fake_kubernetes.requests if method in {"POST", "PATCH"}]
    job_created = writes.index(("POST", "/apis/batch/v1/namespaces/platform/jobs"))
    idle_patched = writes.index(("PATCH", "/apis/apps/v1/namespaces/platform/deployments/orders-green"))
    assert job_created < idle_patched


def test_deploy_migrates_with_the_new_image_and_the_services_configuration(ctx, fake_kubernetes):
    settings = fake_kubernetes.get("deployments", "orders-green")["spec"]["template"]["spec"]["containers"][0]
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    (job_name,) = fake_kubernetes.names("jobs")
    container = fake_kubernetes.get("jobs", job_name)["spec"]["template"]["spec"]["containers"][0]
    assert settings["envFrom"][0]["configMapRef"]["name"].startswith("platform-config-")
    assert (container["image"], container["command"], container["envFrom"]) == (
        NEW_IMAGE,
        ["python", "manage.py", "migrate", "--no-input"],
        settings["envFrom"],
    )


def test_deploy_sets_the_image_on_the_idle_color(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _image(fake_kubernetes, "orders-green") == NEW_IMAGE


def test_deploy_scales_the_idle_color_to_the_live_colors_replicas(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.get("deployments", "orders-green")["spec"]["replicas"] == LIVE_REPLICAS


def test_deploy_keeps_the_other_containers_settings_of_the_idle_color(ctx, fake_kubernetes):
    before = fake_kubernetes.get("deployments", "orders-green")["spec"]["template"]["spec"]["containers"][0]

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    after = fake_kubernetes.get("deployments", "orders-green")["spec"]["template"]["spec"]["containers"][0]
    assert after == {**before, "image": NEW_IMAGE}


def test_deploy_does_not_write_to_the_live_color(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.writes("deployments/orders-blue") == []


def test_deploy_leaves_the_traffic_on_the_live_color(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _selector_color(fake_kubernetes, "orders") == "blue"


def test_deploy_smoke_tests_through_the_preview_service(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    proxied = [path for _, path, _ in fake_kubernetes.requests if "/proxy/" in path]
    assert proxied == [
        "/api/v1/namespaces/platform/services/orders-preview%3Ahttp/proxy/readyz",
        "/api/v1/namespaces/platform/services/orders-preview%3Ahttp/proxy/version",
    ]


def test_deploy_waits_for_the_rollout(ctx, fake_kubernetes, clock):
    fake_kubernetes.rollout_reads = 3

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert clock.slept == [2.0, 2.0, 2.0]


def test_deploy_reuses_a_finished_migration_of_the_same_image(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert len(fake_kubernetes.writes("jobs")) == 1


def test_deploy_stops_when_the_migration_fails(ctx, fake_kubernetes):
    fake_kubernetes.job_outcome = "failed"

    with pytest.raises(BlueGreenError, match="failed; the idle color was not touched"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_a_failed_migration_leaves_the_idle_color_untouched(ctx, fake_kubernetes):
    fake_kubernetes.job_outcome = "failed"

    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _image(fake_kubernetes, "orders-green") == IDLE_IMAGE


def test_a_migration_failure_says_where_the_logs_are(ctx, fake_kubernetes):
    fake_kubernetes.job_outcome = "failed"
    job = f"orders-migrate-{__import__('hashlib').sha256(NEW_IMAGE.encode()).hexdigest()[:10]}"

    with pytest.raises(BlueGreenError) as refused:
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert refused.value.next_step.startswith(f"read kubectl -n platform logs job/{job}; fix the migration")


def test_deploy_gives_up_on_a_migration_after_its_deadline(ctx, fake_kubernetes, clock):
    fake_kubernetes.job_outcome = "running"

    with pytest.raises(BlueGreenError, match="did not finish within 60 s"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE, migrate_timeout_seconds=60)


def test_deploy_gives_up_on_a_rollout_after_its_deadline(ctx, fake_kubernetes, clock):
    fake_kubernetes.stuck.add("orders-green")

    with pytest.raises(BlueGreenError, match="orders green was not available within 30 s"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE, rollout_timeout_seconds=30)


def test_a_stuck_rollout_says_the_live_color_still_serves(ctx, fake_kubernetes):
    fake_kubernetes.stuck.add("orders-green")

    with pytest.raises(BlueGreenError) as refused:
        commands.deploy(ctx, service="orders", image=NEW_IMAGE, rollout_timeout_seconds=30)

    assert "blue still serves every request" in refused.value.next_step


def test_deploy_fails_when_the_idle_color_is_not_ready_through_the_preview(ctx, fake_kubernetes):
    fake_kubernetes.proxy_overrides[("orders-preview", "readyz")] = (503, {"detail": "database unreachable"})

    with pytest.raises(BlueGreenError, match="GET /readyz through orders-preview answered 503"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_deploy_fails_when_the_preview_answers_from_another_color(ctx, fake_kubernetes):
    answer = {"service": "orders", "color": "blue", "version": "1.4.0", "git_sha": "abc"}
    fake_kubernetes.proxy_overrides[("orders-preview", "version")] = (200, answer)

    with pytest.raises(BlueGreenError, match="smoke test of orders green failed: GET /version"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_a_failed_smoke_test_switches_nothing(ctx, fake_kubernetes):
    fake_kubernetes.proxy_overrides[("orders-preview", "readyz")] = (503, {"detail": "draining"})

    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.writes("services") == []


def test_deploy_points_a_wandering_preview_service_back_at_the_idle_color(ctx, fake_kubernetes):
    fake_kubernetes.touch("services", "orders-preview", patch={"spec": {"selector": {"color": "blue"}}})

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _selector_color(fake_kubernetes, "orders-preview") == "green"


def test_deploy_releases_its_lock(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _lease_holder(fake_kubernetes, "orders") is None


def test_a_failed_deploy_releases_its_lock(ctx, fake_kubernetes):
    fake_kubernetes.job_outcome = "failed"

    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _lease_holder(fake_kubernetes, "orders") is None


def test_deploy_of_an_unknown_service_is_refused(ctx):
    with pytest.raises(BlueGreenError, match="'billing' is not a service of the platform"):
        commands.deploy(ctx, service="billing", image=NEW_IMAGE)


def test_deploy_of_an_unknown_service_takes_no_lock(ctx, fake_kubernetes):
    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="billing", image=NEW_IMAGE)

    assert fake_kubernetes.names("leases") == []


def test_the_fake_had_no_errors_of_its_own_during_a_full_cycle(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    commands.rollback(ctx, service="orders")
    commands.scale_down(ctx, service="orders")

    assert fake_kubernetes.errors == []


# --- promote ----------------------------------------------------------------------------------------------


def test_promote_sends_the_traffic_to_the_idle_color(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert _selector_color(fake_kubernetes, "orders") == "green"


def test_promote_switches_with_one_patch_of_the_stable_service(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.writes("services/orders") == [
        ("PATCH", "/api/v1/namespaces/platform/services/orders", "application/merge-patch+json")
    ]


def test_promote_records_who_when_from_to_and_version_on_the_service(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    annotations = fake_kubernetes.get("services", "orders")["metadata"]["annotations"]
    assert json.loads(annotations[LAST_SWITCH_ANNOTATION]) == {
        "action": "promote",
        "who": "alice",
        "when": "2026-03-02T09:00:00Z",
        "from": "blue",
        "to": "green",
        "version": "1.5.0",
        "image": NEW_IMAGE,
        "from_image": LIVE_IMAGE,
        "config": "",  # deployed without manifests: no configuration id on either color
        "from_config": "",
    }


def test_promote_writes_a_kubernetes_event_on_the_service(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    (event_name,) = fake_kubernetes.names("events")
    event = fake_kubernetes.get("events", event_name)
    assert (event["reason"], event["involvedObject"]["name"], event["message"]) == (
        "BlueGreenPromote",
        "orders",
        f"alice promote: blue -> green, version 1.5.0 ({NEW_IMAGE}), selector patched in 0.000 s, "
        "endpoints on green after 0.000 s",
    )


def test_promote_points_the_preview_service_at_the_old_color(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert _selector_color(fake_kubernetes, "orders-preview") == "blue"


def test_promote_moves_the_outbox_relay_to_the_new_image(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert _image(fake_kubernetes, "orders-outbox-relay") == NEW_IMAGE


def test_promote_moves_the_settle_schedule_to_the_new_image(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    cronjob = fake_kubernetes.get("cronjobs", "orders-payments-settle")
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE


def test_promote_moves_only_the_workloads_of_its_own_service(ctx, fake_kubernetes):
    commands.deploy(ctx, service="notifications", image=NEW_IMAGE)
    commands.promote(ctx, service="notifications", image=NEW_IMAGE)

    moved = {path.rsplit("/", 1)[1] for method, path, _ in fake_kubernetes.requests if method == "PATCH"}
    assert moved & {"orders-outbox-relay", "payments-outbox-relay", "orders-payments-settle", "auth-prune"} == set()
    assert {"notifications-email-worker", "notifications-prune"} <= moved


def test_promote_moves_every_schedule_of_the_service_to_the_new_image(ctx, fake_kubernetes):
    commands.deploy(ctx, service="payments", image=NEW_IMAGE)
    commands.promote(ctx, service="payments", image=NEW_IMAGE)

    images = {
        name: fake_kubernetes.get("cronjobs", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        for name in ("payments-requests-finish", "payments-prune")
    }
    assert images == {"payments-requests-finish": NEW_IMAGE, "payments-prune": NEW_IMAGE}


def test_a_missing_relay_does_not_undo_the_switch_and_says_that_traffic_moved(ctx, fake_kubernetes, said):
    fake_kubernetes.objects.pop(("deployments", "platform", "payments-outbox-relay"))
    commands.deploy(ctx, service="payments", image=NEW_IMAGE)

    with pytest.raises(TrafficMovedError, match="payments: traffic moved to green; 1 step"):
        commands.promote(ctx, service="payments", image=NEW_IMAGE)

    assert (_selector_color(fake_kubernetes, "payments"), said[-1].split(";")[1]) == (
        "green",
        f" fix: kubectl -n platform set image deployment/payments-outbox-relay relay={NEW_IMAGE}",
    )


def test_promote_again_after_a_failed_step_changes_nothing(ctx, fake_kubernetes):
    fake_kubernetes.objects.pop(("deployments", "platform", "payments-outbox-relay"))
    commands.deploy(ctx, service="payments", image=NEW_IMAGE)
    with pytest.raises(TrafficMovedError):
        commands.promote(ctx, service="payments", image=NEW_IMAGE)
    writes = len(fake_kubernetes.writes("services"))

    assert commands.promote(ctx, service="payments", image=NEW_IMAGE) is None
    assert (_selector_color(fake_kubernetes, "payments"), len(fake_kubernetes.writes("services"))) == ("green", writes)


def test_promote_keeps_the_old_color_up_for_rollback(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    assert fake_kubernetes.get("deployments", "orders-blue")["spec"]["replicas"] == LIVE_REPLICAS


def _shrink(fake_kubernetes, name: str, replicas: int) -> None:
    """What a color's HPA does to it while it has no traffic: fewer replicas, all of them available."""
    counts = {
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    fake_kubernetes.touch("deployments", name, patch={"spec": {"replicas": replicas}, "status": counts})


def _shrink_idle_green(fake_kubernetes, replicas: int) -> None:
    _shrink(fake_kubernetes, "orders-green", replicas)


def test_promote_first_gives_the_idle_color_the_live_colors_size(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)
    _shrink_idle_green(fake_kubernetes, 1)

    commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.get("deployments", "orders-green")["spec"]["replicas"] == LIVE_REPLICAS


def test_promote_scales_up_before_it_switches(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)
    _shrink_idle_green(fake_kubernetes, 1)
    fake_kubernetes.requests.clear()

    commands.promote(ctx, service="orders", image=NEW_IMAGE)

    writes = [path.rsplit("/", 1)[1] for method, path, _ in fake_kubernetes.requests if method == "PATCH"]
    assert writes.index("orders-green") < writes.index("orders")


def test_promote_does_not_switch_when_the_idle_color_cannot_grow(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)
    _shrink_idle_green(fake_kubernetes, 1)
    fake_kubernetes.stuck.add("orders-green")

    with pytest.raises(BlueGreenError, match="orders green was not available within 60 s"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, capacity_timeout_seconds=60)


def test_promote_refuses_an_idle_color_at_zero_replicas(ctx, fake_kubernetes):
    with pytest.raises(BlueGreenError, match="orders green is not fully available"):
        commands.promote(ctx, service="orders", image=IDLE_IMAGE)


def test_promote_refuses_an_image_no_color_runs(ctx, fake_kubernetes):
    with pytest.raises(BlueGreenError, match=f"{NEW_IMAGE} is on neither"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)


def test_promote_of_the_live_image_changes_nothing(ctx, fake_kubernetes, said):
    assert commands.promote(ctx, service="orders", image=LIVE_IMAGE) is None

    assert (fake_kubernetes.writes("services"), said[-1]) == (
        [],
        f"orders: {LIVE_IMAGE} is live already on blue; nothing to do",
    )


def test_promote_twice_switches_once(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    writes = len(fake_kubernetes.writes("services/orders"))

    assert commands.promote(ctx, service="orders", image=NEW_IMAGE) is None
    assert (_selector_color(fake_kubernetes, "orders"), len(fake_kubernetes.writes("services/orders"))) == (
        "green",
        writes,
    )


def test_a_refused_promotion_changes_no_service(ctx, fake_kubernetes):
    with pytest.raises(BlueGreenError):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.writes("services") == []


def test_promote_loses_the_race_to_a_concurrent_change_of_the_service(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    def someone_else_switches_first(method, path):
        if method == "PATCH" and path.endswith("/services/orders"):
            fake_kubernetes.before_request = None
            fake_kubernetes.touch("services", "orders", patch={"metadata": {"labels": {"touched": "yes"}}})

    fake_kubernetes.before_request = someone_else_switches_first

    with pytest.raises(BlueGreenError, match="changed while this promote was deciding; nothing was switched"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)


def test_a_promotion_that_lost_the_race_left_the_selector_alone(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    def someone_else_changes_it(method, path):
        if method == "PATCH" and path.endswith("/services/orders"):
            fake_kubernetes.before_request = None
            fake_kubernetes.touch("services", "orders", patch={"metadata": {"labels": {"touched": "yes"}}})

    fake_kubernetes.before_request = someone_else_changes_it
    with pytest.raises(BlueGreenError):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert _selector_color(fake_kubernetes, "orders") == "blue"


@pytest.fixture
def prometheus():
    servers = []

    def start(answers: dict[str, str | None]) -> FakePrometheus:
        servers.append(FakePrometheus(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_promote_passes_the_gate_on_healthy_metrics(ctx, fake_kubernetes, prometheus):
    server = prometheus({'status=~"5.."': "2", "histogram_quantile": "0.120", "increase(": "1000"})
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    commands.promote(ctx, service="orders", image=NEW_IMAGE, prometheus_url=server.url)

    assert _selector_color(fake_kubernetes, "orders") == "green"


def test_the_gate_asks_for_the_idle_colors_series(ctx, fake_kubernetes, prometheus):
    server = prometheus({'status=~"5.."': "2", "histogram_quantile": "0.120", "increase(": "1000"})
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    commands.promote(ctx, service="orders", image=NEW_IMAGE, prometheus_url=server.url, window="10m")

    assert server.queries == [
        'sum(increase(django_http_responses_total_by_status_total{service="orders",color="green"}[10m]))',
        'sum(increase(django_http_responses_total_by_status_total{service="orders",color="green",status=~"5.."}[10m]))',
        "histogram_quantile(0.95, sum by (le) (rate(django_http_requests_latency_seconds_by_view_method_bucket"
        '{service="orders",color="green"}[10m])))',
    ]


def test_promote_refuses_on_a_failing_gate(ctx, fake_kubernetes, prometheus):
    server = prometheus({'status=~"5.."': "50", "histogram_quantile": "0.120", "increase(": "1000"})
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    with pytest.raises(BlueGreenError, match=r"failed the metrics gate \(fail: error rate 5.00% above 1.00%\)"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, prometheus_url=server.url)


def test_promote_refuses_when_prometheus_has_no_data(ctx, fake_kubernetes, prometheus):
    server = prometheus({})
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    with pytest.raises(BlueGreenError, match="the metrics gate is inconclusive"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, prometheus_url=server.url)


def test_promote_refuses_when_prometheus_does_not_answer(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    with pytest.raises(BlueGreenError, match=r"inconclusive.*Prometheus at http://127\.0\.0\.1:9 did not answer"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, prometheus_url="http://127.0.0.1:9")


def test_an_inconclusive_gate_leaves_the_traffic_where_it_was(ctx, fake_kubernetes, prometheus):
    server = prometheus({"increase(": "3"})
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    with pytest.raises(BlueGreenError):
        commands.promote(
            ctx,
            service="orders",
            image=NEW_IMAGE,
            prometheus_url=server.url,
            thresholds=GateThresholds(min_requests=50),
        )

    assert _selector_color(fake_kubernetes, "orders") == "blue"


# --- rollback ------------------------------------------------------------------------------------------------


def test_rollback_sends_the_traffic_back(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.rollback(ctx, service="orders")

    assert _selector_color(fake_kubernetes, "orders") == "blue"


def test_rollback_is_one_patch_of_the_stable_service(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    patches_before = len(fake_kubernetes.writes("services/orders"))

    commands.rollback(ctx, service="orders")

    assert len(fake_kubernetes.writes("services/orders")) - patches_before == 1


def test_rollback_measures_the_time_until_the_endpoints_are_the_old_colors(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    fake_kubernetes.endpoints_lag = 3

    assert commands.rollback(ctx, service="orders") == commands.Switched(patch_seconds=0.0, traffic_seconds=0.75)


def test_rollback_reports_endpoints_that_do_not_settle(ctx, fake_kubernetes, said):
    _promoted(ctx, fake_kubernetes)
    fake_kubernetes.endpoints_lag = 1000

    with pytest.raises(TrafficMovedError, match="the endpoints did not settle, so orders-green was left up"):
        commands.rollback(ctx, service="orders")

    assert (
        "warning: 30 s after the switch the endpoints of Service orders are not only blue pods; check kubectl -n "
        "platform get endpointslices -l kubernetes.io/service-name=orders"
    ) in said


def test_a_rollback_that_did_not_settle_still_switched_the_selector_and_kept_the_new_color(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    fake_kubernetes.endpoints_lag = 1000

    with pytest.raises(TrafficMovedError):
        commands.rollback(ctx, service="orders")

    assert (_selector_color(fake_kubernetes, "orders"), _replicas(fake_kubernetes, "orders-green")) == (
        "blue",
        LIVE_REPLICAS,
    )


def test_rollback_scales_the_color_it_left_to_zero_after_the_nodes_settled(ctx, fake_kubernetes, clock):
    _promoted(ctx, fake_kubernetes)
    slept = len(clock.slept)

    commands.rollback(ctx, service="orders")

    assert (_replicas(fake_kubernetes, "orders-green"), clock.slept[slept:][-1]) == (0, ctx.dataplane_settle_seconds)


def test_rollback_with_keep_leaves_the_color_it_left_up(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.rollback(ctx, service="orders", keep=True)

    assert _replicas(fake_kubernetes, "orders-green") == LIVE_REPLICAS


def test_rollback_twice_switches_once(ctx, fake_kubernetes, said):
    _promoted(ctx, fake_kubernetes)
    commands.rollback(ctx, service="orders")
    writes = len(fake_kubernetes.writes("services/orders"))

    assert commands.rollback(ctx, service="orders") is None
    assert (_selector_color(fake_kubernetes, "orders"), len(fake_kubernetes.writes("services/orders"))) == (
        "blue",
        writes,
    )
    assert said[-1] == f"orders: blue ({LIVE_IMAGE}) is live already, as before the last promotion"


def test_rollback_without_a_recorded_promotion_is_refused(ctx, fake_kubernetes):
    with pytest.raises(BlueGreenError, match="no promotion of orders is recorded"):
        commands.rollback(ctx, service="orders")


def test_rollback_refuses_when_the_previous_color_runs_another_image_since(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    _set_image(fake_kubernetes, "orders-blue", IDLE_IMAGE)

    with pytest.raises(BlueGreenError, match=f"orders blue runs {IDLE_IMAGE} now, not {LIVE_IMAGE}"):
        commands.rollback(ctx, service="orders")
    assert _selector_color(fake_kubernetes, "orders") == "green"


def test_a_forced_rollback_switches_to_a_previous_color_that_is_not_fully_available(ctx, fake_kubernetes, said):
    _promoted(ctx, fake_kubernetes)
    _degrade(fake_kubernetes, "orders-blue")

    commands.rollback(ctx, service="orders", force=True)

    assert _selector_color(fake_kubernetes, "orders") == "blue"
    assert any(line.startswith("warning: forced: blue takes the traffic while blue:") for line in said)


def test_an_unforced_rollback_to_a_color_not_fully_available_is_refused_and_says_force_exists(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    _degrade(fake_kubernetes, "orders-blue")

    with pytest.raises(BlueGreenError, match="roll back with --force"):
        commands.rollback(ctx, service="orders")


def test_rollback_is_recorded_in_the_history_after_the_promotion(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.rollback(ctx, service="orders")

    history = json.loads(fake_kubernetes.get("services", "orders")["metadata"]["annotations"][HISTORY_ANNOTATION])
    assert [(r["action"], r["from"], r["to"], r["version"]) for r in history] == [
        ("rollback", "green", "blue", "1.4.0"),
        ("promote", "blue", "green", "1.5.0"),
    ]


def test_rollback_moves_the_relay_back_to_the_old_image(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.rollback(ctx, service="orders")

    assert _image(fake_kubernetes, "orders-outbox-relay") == LIVE_IMAGE


def test_rollback_to_a_shrunken_color_warns_and_switches_anyway(ctx, fake_kubernetes, said):
    _promoted(ctx, fake_kubernetes)
    _shrink(fake_kubernetes, "orders-blue", 1)
    said.clear()

    commands.rollback(ctx, service="orders")

    assert (_selector_color(fake_kubernetes, "orders"), said[0]) == (
        "blue",
        "warning: blue has 2 pod(s) fewer than green; rolling back now anyway, its HPA scales it up under the load",
    )


def test_rollback_is_refused_once_the_old_color_is_scaled_down(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    commands.scale_down(ctx, service="orders")

    with pytest.raises(BlueGreenError, match="orders blue cannot take traffic back"):
        commands.rollback(ctx, service="orders")


# --- scale-down ---------------------------------------------------------------------------------------------


def test_scale_down_scales_the_idle_color_to_zero(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.scale_down(ctx, service="orders")

    assert fake_kubernetes.get("deployments", "orders-blue")["spec"]["replicas"] == 0


def test_scale_down_leaves_the_live_color_alone(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    commands.scale_down(ctx, service="orders")

    assert fake_kubernetes.get("deployments", "orders-green")["spec"]["replicas"] == LIVE_REPLICAS


def test_scale_down_waits_until_connections_had_the_drain_time(ctx, fake_kubernetes, clock):
    _promoted(ctx, fake_kubernetes)
    clock.sleep(30)

    commands.scale_down(ctx, service="orders", drain_seconds=120)

    assert clock.slept[-1] == 90.0


def test_scale_down_without_waiting_refuses_during_the_drain(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)

    with pytest.raises(BlueGreenError, match="may still be draining for 120 s"):
        commands.scale_down(ctx, service="orders", drain_seconds=120, wait=False)


def test_scale_down_after_the_drain_time_does_not_wait(ctx, fake_kubernetes, clock):
    _promoted(ctx, fake_kubernetes)
    clock.sleep(300)
    sleeps_before = len(clock.slept)

    commands.scale_down(ctx, service="orders", drain_seconds=120)

    assert len(clock.slept) == sleeps_before


# --- the lock -----------------------------------------------------------------------------------------------


def _lease(holder: str | None, renew_time: str, duration: int = 600) -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "bluegreen-orders"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": renew_time},
    }


def test_a_deploy_is_refused_while_another_holds_the_lock(ctx, fake_kubernetes):
    fake_kubernetes.put(_lease("bob deploy", "2026-03-02T08:59:00.000000Z"))

    with pytest.raises(BlueGreenError, match="another operation on orders holds the lock: bob deploy"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_a_refused_deploy_changes_no_deployment(ctx, fake_kubernetes):
    fake_kubernetes.put(_lease("bob deploy", "2026-03-02T08:59:00.000000Z"))

    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert fake_kubernetes.writes("deployments") == []


def test_a_refused_deploy_leaves_the_other_holders_lock(ctx, fake_kubernetes):
    fake_kubernetes.put(_lease("bob deploy", "2026-03-02T08:59:00.000000Z"))

    with pytest.raises(BlueGreenError):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _lease_holder(fake_kubernetes, "orders") == "bob deploy"


def test_an_expired_lock_is_taken_over(ctx, fake_kubernetes, said):
    fake_kubernetes.put(_lease("bob deploy", "2026-03-02T08:00:00.000000Z", duration=60))

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert said[0] == "taking over the expired lock of bob deploy"


def test_the_lock_of_another_service_does_not_block(ctx, fake_kubernetes):
    other = _lease("bob deploy", "2026-03-02T08:59:00.000000Z")
    other["metadata"]["name"] = "bluegreen-payments"
    fake_kubernetes.put(other)

    commands.deploy(ctx, service="orders", image=NEW_IMAGE)

    assert _image(fake_kubernetes, "orders-green") == NEW_IMAGE


def test_two_takers_of_a_free_lock_race_and_one_loses(ctx, fake_kubernetes):
    fake_kubernetes.put(_lease(None, "2026-03-02T08:00:00.000000Z"))

    def bob_takes_it_first(method, path):
        if method == "PATCH" and path.endswith("/leases/bluegreen-orders"):
            fake_kubernetes.before_request = None
            fake_kubernetes.touch("leases", "bluegreen-orders", patch={"spec": {"holderIdentity": "bob deploy"}})

    fake_kubernetes.before_request = bob_takes_it_first

    with pytest.raises(BlueGreenError, match="holds the lock: bob deploy"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_two_creators_of_a_new_lock_race_and_one_loses(ctx, fake_kubernetes):
    def bob_creates_it_first(method, path):
        if method == "POST" and path.endswith("/leases"):
            fake_kubernetes.before_request = None
            fake_kubernetes.put(_lease("bob promote", "2026-03-02T09:00:00.000000Z"))

    fake_kubernetes.before_request = bob_creates_it_first

    with pytest.raises(BlueGreenError, match="holds the lock: bob promote"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE)


def test_the_lock_is_a_lease_that_names_the_operation_and_the_actor(ctx, fake_kubernetes):
    def look_at_the_lease_during_the_switch(method, path):
        if method == "PATCH" and path.endswith("/services/orders"):
            spec = fake_kubernetes.objects[("leases", "platform", "bluegreen-orders")]["spec"]
            seen.append((spec["holderIdentity"].split()[:2], spec["leaseDurationSeconds"]))

    seen = []
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)
    fake_kubernetes.before_request = look_at_the_lease_during_the_switch

    commands.promote(ctx, service="orders", image=NEW_IMAGE)

    assert seen == [(["alice", "promote"], 480)]


# --- status ---------------------------------------------------------------------------------------------------


def test_status_shows_live_color_versions_readiness_lock_and_switches(ctx, fake_kubernetes, said):
    _promoted(ctx, fake_kubernetes)
    said.clear()

    commands.status(ctx, service="orders")

    assert said == [
        "orders: live color green",
        f"  live green: 1.5.0 ({NEW_IMAGE}), 3/3 available, 3 updated, ready",
        f"  idle blue: 1.4.0 ({LIVE_IMAGE}), 3/3 available, 3 updated, ready",
        "  autoscaler: orders-green, 2 to 3 pods",
        "  lock: free",
        "  2026-03-02T09:00:00Z promote blue -> green version 1.5.0 by alice",
    ]


def test_status_of_a_namespace_without_the_manifests_says_to_apply_them(ctx, fake_kubernetes):
    fake_kubernetes.objects.pop(("deployments", "platform", "auth-green"))

    with pytest.raises(BlueGreenError, match="apply the manifests first"):
        commands.status(ctx, service="auth")


def test_every_write_of_the_tool_names_its_field_manager(ctx, fake_kubernetes):
    _promoted(ctx, fake_kubernetes)
    commands.rollback(ctx, service="orders")
    commands.scale_down(ctx, service="orders")

    managers = {manager for method, path, manager in fake_kubernetes.field_managers if not path.endswith("/events")}

    assert managers == {"bluegreen"}


def _verbs_used(requests: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of each request the tool made, as RBAC names them."""
    used = set()
    for method, path, _ in requests:
        parts = path.split("/")
        group = "" if parts[1] == "api" else parts[2]
        resource = parts[5] if parts[1] == "api" else parts[6]
        if "/proxy/" in path:
            resource = f"{resource}/proxy"
        elif path.endswith("/log"):
            resource, parts = f"{resource}/log", parts[:-1]
        named = len(parts) > (6 if parts[1] == "api" else 7)
        verb = {"GET": "get" if named else "list", "POST": "create", "PATCH": "patch", "DELETE": "delete"}[method]
        used.add((group, resource, verb))
    return used


def test_the_bluegreen_role_grants_exactly_what_the_tool_uses(ctx, fake_kubernetes, rendered):
    commands.status(ctx, service="orders")
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=_with_setting(rendered, "LOG_LEVEL", "DEBUG"))
    answered = {"requests": 300, "p95_ms": 40, "server_error_rate": 0, "client_error_rate": 0}
    fake_kubernetes.job_log = "GATE-RESULT " + json.dumps({"idle": answered, "live": answered})
    fake_kubernetes.prometheus = lambda query: 0.05 if "histogram_quantile" in query else 0 if "5.." in query else 300
    commands.promote_and_watch(
        ctx,
        service="orders",
        image=NEW_IMAGE,
        gate_options=commands.GateOptions(),
        watch_options=commands.WatchOptions(prometheus=gate.Prometheus(cluster=ctx.cluster), seconds=10),
    )
    assert fake_kubernetes.get("services", "orders")["spec"]["selector"]["color"] == "green"
    commands.rollback(ctx, service="orders")
    commands.scale_down(ctx, service="orders")
    role = next(
        obj for obj in rendered["kind"] if obj["kind"] == "Role" and obj["metadata"]["name"] == "bluegreen-operator"
    )

    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }

    assert granted == _verbs_used(fake_kubernetes.requests)


def test_deploy_stops_waiting_when_the_rollout_stopped_progressing(ctx, fake_kubernetes):
    fake_kubernetes.stuck.add("orders-green")
    fake_kubernetes.touch(
        "deployments",
        "orders-green",
        patch={
            "status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
        },
    )

    with pytest.raises(BlueGreenError, match="orders green stopped progressing"):
        commands.deploy(ctx, service="orders", image=NEW_IMAGE)


def test_status_shows_who_holds_the_lock_and_does_not_wait_for_it(ctx, fake_kubernetes, said):
    fake_kubernetes.put(_lease("bob deploy", "2026-03-02T08:59:00.000000Z"))

    commands.status(ctx, service="orders")

    assert said[4] == "  lock: held by bob deploy"


def test_every_write_of_a_field_the_tool_owns_carries_a_new_change_stamp(ctx, fake_kubernetes):
    """The admission policy (base/bluegreen-guard.yaml) lets a selector, an image or the autoscaler's
    target change only with a new bluegreen.platform.dev/change: the tool's own writes must carry one."""
    _promoted(ctx, fake_kubernetes)
    commands.rollback(ctx, service="orders")

    owned = []
    for _, body in fake_kubernetes.patches:
        if not isinstance(body, dict):
            continue
        spec = body.get("spec", {})
        template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {})
        if "selector" in spec or "scaleTargetRef" in spec or template.get("spec", {}).get("containers"):
            owned.append(body.get("metadata", {}).get("annotations", {}).get("bluegreen.platform.dev/change"))
    assert len(owned) >= 8
    assert None not in owned
    assert len(set(owned)) == len(owned)


# --- releases with their configuration (deploy --manifests) -----------------------------------------------


def test_deploy_with_manifests_gives_the_idle_color_their_template_and_settings(ctx, fake_kubernetes, rendered):
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")
    live_before = _web_template(fake_kubernetes, "orders-blue")

    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)

    green = fake_kubernetes.get("deployments", "orders-green")
    assert (_env_config(green["spec"]["template"]), _image(fake_kubernetes, "orders-green")) == (
        "platform-config-debug",
        NEW_IMAGE,
    )
    assert fake_kubernetes.get("configmaps", "platform-config-debug")["data"]["LOG_LEVEL"] == "DEBUG"
    assert green["metadata"]["annotations"]["bluegreen.platform.dev/config"] == configuration_id(
        manifests, service="orders"
    )
    assert _web_template(fake_kubernetes, "orders-blue") == live_before  # the live color is not touched


def test_the_migration_of_a_release_runs_with_its_own_settings(ctx, fake_kubernetes, rendered):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=_with_setting(rendered, "LOG_LEVEL", "DEBUG"))

    (job_name,) = fake_kubernetes.names("jobs")
    assert _env_config(fake_kubernetes.get("jobs", job_name)["spec"]["template"]) == "platform-config-debug"


def test_deploy_with_manifests_writes_the_template_whole_and_stamped_as_the_tools(ctx, fake_kubernetes, rendered):
    """A JSON Patch replacing the template (a merge would keep what the manifests dropped), guarded by
    the resourceVersion it read, with a new change stamp for the admission policy."""
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=_with_setting(rendered, "LOG_LEVEL", "DEBUG"))

    (body,) = [b for path, b in fake_kubernetes.patches if path == "deployments/orders-green"]
    operations = {operation["path"]: operation for operation in body}
    assert operations["/metadata/resourceVersion"]["op"] == "test"
    assert operations["/spec/template"]["op"] == "replace"
    assert operations["/metadata/annotations"]["value"]["bluegreen.platform.dev/change"]


def test_a_settings_change_alone_is_a_release_deployed_and_promoted_like_an_image(ctx, fake_kubernetes, rendered):
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")

    commands.deploy(ctx, service="orders", image=LIVE_IMAGE, manifests=manifests)
    switched = commands.promote(ctx, service="orders", image=LIVE_IMAGE, manifests=manifests)

    assert switched is not None
    assert (_selector_color(fake_kubernetes, "orders"), _image(fake_kubernetes, "orders-green")) == (
        "green",
        LIVE_IMAGE,
    )
    assert _env_config(_web_template(fake_kubernetes, "orders-green")) == "platform-config-debug"


def test_deploy_and_promote_of_a_live_release_change_nothing(ctx, fake_kubernetes, rendered, said):
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    commands.promote(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    writes = len([r for r in fake_kubernetes.requests if r[0] in {"POST", "PATCH"} and "/leases" not in r[1]])

    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    again = commands.promote(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)

    assert again is None
    assert len([r for r in fake_kubernetes.requests if r[0] in {"POST", "PATCH"} and "/leases" not in r[1]]) == writes
    assert said[-1].endswith("is live already on green; nothing to do")


def test_promote_refuses_a_release_no_color_runs(ctx, fake_kubernetes, rendered):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=_with_setting(rendered, "LOG_LEVEL", "DEBUG"))

    with pytest.raises(BlueGreenError, match="is on neither"):
        commands.promote(
            ctx, service="orders", image=NEW_IMAGE, manifests=_with_setting(rendered, "LOG_LEVEL", "WARNING")
        )

    assert _selector_color(fake_kubernetes, "orders") == "blue"


def test_promote_moves_the_relays_and_schedules_to_the_new_releases_templates(ctx, fake_kubernetes, rendered):
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)

    commands.promote(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)

    followed = {
        name: (_env_config(template), template["spec"]["containers"][0]["image"])
        for name, template in _follower_templates(fake_kubernetes).items()
    }
    assert followed == dict.fromkeys(followed, ("platform-config-debug", NEW_IMAGE))


def test_rollback_returns_the_relays_and_schedules_to_the_templates_they_ran_before(ctx, fake_kubernetes, rendered):
    """The color rolled back to was made by the first apply, with no release recorded: what the
    relays and schedules ran while it was live was written down on it at the promotion."""
    before = _follower_templates(fake_kubernetes)
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    commands.promote(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)

    commands.rollback(ctx, service="orders")

    assert _follower_templates(fake_kubernetes) == before


def test_rollback_refuses_a_color_given_another_configuration_since(ctx, fake_kubernetes, rendered):
    manifests = _with_setting(rendered, "LOG_LEVEL", "DEBUG")
    commands.deploy(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    commands.promote(ctx, service="orders", image=NEW_IMAGE, manifests=manifests)
    fake_kubernetes.touch(
        "deployments", "orders-blue", patch={"metadata": {"annotations": {"bluegreen.platform.dev/config": "other"}}}
    )

    with pytest.raises(BlueGreenError, match="with configuration other now"):
        commands.rollback(ctx, service="orders")

    assert _selector_color(fake_kubernetes, "orders") == "green"
