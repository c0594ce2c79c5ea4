"""The blue/green rules as plain functions: no cluster, no HTTP."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.services import SERVICES as APP_SERVICES
from deploy.bluegreen import decisions
from deploy.bluegreen.decisions import (
    BlueGreenError,
    ColorState,
    GateOutcome,
    GateResult,
    GateThresholds,
    LockState,
)

NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def _state(**overrides) -> ColorState:
    values = {
        "color": "green",
        "image": "registry.example.com/platform:1.5.0",
        "desired": 3,
        "updated": 3,
        "available": 3,
        "total": 3,
        "generation": 4,
        "observed_generation": 4,
    }
    return ColorState(**{**values, **overrides})


def test_the_tool_knows_the_services_the_code_defines():
    assert tuple(APP_SERVICES) == decisions.SERVICES


@pytest.mark.parametrize(("color", "other"), [("blue", "green"), ("green", "blue")])
def test_other_color(color, other):
    assert decisions.other_color(color) == other


def test_other_color_refuses_an_unknown_color():
    with pytest.raises(ValueError, match="'red' is not a color"):
        decisions.other_color("red")


def test_selected_color_reads_the_selector():
    service = {
        "metadata": {"name": "orders"},
        "spec": {"selector": {"app.kubernetes.io/name": "orders", "color": "green"}},
    }

    assert decisions.selected_color(service_object=service, service="orders") == "green"


def test_selected_color_refuses_a_selector_without_a_color():
    service = {"metadata": {"name": "orders"}, "spec": {"selector": {"app.kubernetes.io/name": "orders"}}}

    with pytest.raises(BlueGreenError, match="not one color of orders"):
        decisions.selected_color(service_object=service, service="orders")


def test_selected_color_refuses_a_selector_of_another_service():
    service = {
        "metadata": {"name": "orders"},
        "spec": {"selector": {"app.kubernetes.io/name": "auth", "color": "blue"}},
    }

    with pytest.raises(BlueGreenError, match="not one color of orders"):
        decisions.selected_color(service_object=service, service="orders")


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("registry.example.com/platform:1.5.0", "1.5.0"),
        ("registry.example.com:5000/platform", "latest"),
        ("registry.example.com:5000/platform:2.0", "2.0"),
        ("platform@sha256:abc123", "sha256:abc123"),
    ],
)
def test_image_version(image, version):
    assert decisions.image_version(image) == version


def test_migration_job_name_is_stable_per_image_and_a_valid_name():
    first = decisions.migration_job_name(service="payments", image="registry.example.com/platform:1.5.0")
    again = decisions.migration_job_name(service="payments", image="registry.example.com/platform:1.5.0")

    assert (first, len(first)) == (again, len("payments-migrate-") + 10)


def test_migration_job_name_differs_per_image():
    one = decisions.migration_job_name(service="payments", image="registry.example.com/platform:1.5.0")
    other = decisions.migration_job_name(service="payments", image="registry.example.com/platform:1.5.1")

    assert one != other


# --- color states -------------------------------------------------------------------------------------


def test_color_state_reads_a_deployment():
    deployment = {
        "metadata": {"generation": 7},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "app", "image": "platform:9"}]}},
        },
        "status": {"observedGeneration": 7, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
    }

    assert decisions.color_state(deployment=deployment, color="blue") == ColorState(
        color="blue",
        image="platform:9",
        desired=2,
        updated=2,
        available=1,
        total=2,
        generation=7,
        observed_generation=7,
    )


def test_a_rolled_out_color_with_pods_is_fully_available():
    assert _state().fully_available is True


def test_a_color_at_zero_replicas_is_not_fully_available():
    assert _state(desired=0, updated=0, available=0, total=0).fully_available is False


def test_a_color_whose_new_spec_the_controller_has_not_seen_is_not_fully_available():
    assert _state(generation=5).fully_available is False


def test_a_color_with_old_pods_left_is_not_fully_available():
    assert _state(total=4).fully_available is False


def test_a_color_with_an_unavailable_pod_is_not_fully_available():
    assert _state(available=2).fully_available is False


# --- the gate ------------------------------------------------------------------------------------------

THRESHOLDS = GateThresholds(max_error_rate=0.01, max_p95_seconds=0.5, min_requests=50)


def test_gate_passes_on_enough_traffic_within_thresholds():
    result = decisions.gate_verdict(requests=1000, errors=5, p95_seconds=0.2, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.PASS, ("1000 requests, error rate 0.50%, p95 0.200 s",))


def test_gate_counts_missing_error_series_as_zero_errors_when_requests_were_counted():
    result = decisions.gate_verdict(requests=100, errors=None, p95_seconds=0.2, thresholds=THRESHOLDS)

    assert result.outcome is GateOutcome.PASS


def test_gate_without_request_data_is_inconclusive():
    result = decisions.gate_verdict(requests=None, errors=None, p95_seconds=None, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.INCONCLUSIVE, ("no request metrics for the idle color",))


def test_gate_with_too_few_requests_is_inconclusive():
    result = decisions.gate_verdict(requests=10, errors=0, p95_seconds=0.1, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.INCONCLUSIVE, ("only 10 requests in the window, 50 needed",))


def test_gate_without_latency_data_is_inconclusive():
    result = decisions.gate_verdict(requests=100, errors=0, p95_seconds=None, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.INCONCLUSIVE, ("no latency histogram for the idle color",))


def test_gate_fails_on_errors_above_the_threshold():
    result = decisions.gate_verdict(requests=1000, errors=20, p95_seconds=0.2, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.FAIL, ("error rate 2.00% above 1.00%",))


def test_gate_fails_on_latency_above_the_threshold():
    result = decisions.gate_verdict(requests=1000, errors=0, p95_seconds=0.8, thresholds=THRESHOLDS)

    assert result == GateResult(GateOutcome.FAIL, ("p95 latency 0.800 s above 0.500 s",))


def test_gate_at_exactly_the_thresholds_passes():
    result = decisions.gate_verdict(requests=1000, errors=10, p95_seconds=0.5, thresholds=THRESHOLDS)

    assert result.outcome is GateOutcome.PASS


# --- promote, roll back, scale down ---------------------------------------------------------------------


def test_promotion_is_allowed_for_an_available_color_without_a_gate():
    assert decisions.promotion_refusal(service="orders", idle=_state(), gate=None) is None


def test_promotion_is_allowed_when_the_gate_passes():
    passed = GateResult(GateOutcome.PASS, ("fine",))

    assert decisions.promotion_refusal(service="orders", idle=_state(), gate=passed) is None


def test_promotion_is_refused_for_a_color_not_fully_available():
    refusal = decisions.promotion_refusal(service="orders", idle=_state(available=2), gate=None)

    assert refusal.problem.startswith("orders green is not fully available")


def test_promotion_refusal_for_an_unavailable_color_says_to_deploy_first():
    refusal = decisions.promotion_refusal(service="orders", idle=_state(available=2), gate=None)

    assert refusal.next_step.startswith("deploy it first (python -m deploy.bluegreen deploy orders IMAGE)")


def test_promotion_is_refused_when_the_gate_fails():
    failed = GateResult(GateOutcome.FAIL, ("error rate 2.00% above 1.00%",))

    refusal = decisions.promotion_refusal(service="orders", idle=_state(), gate=failed)

    assert refusal.problem == "orders green failed the metrics gate (fail: error rate 2.00% above 1.00%)"


def test_promotion_is_refused_when_the_gate_is_inconclusive():
    unknown = GateResult(GateOutcome.INCONCLUSIVE, ("no request metrics for the idle color",))

    refusal = decisions.promotion_refusal(service="orders", idle=_state(), gate=unknown)

    assert refusal.problem == (
        "orders green: the metrics gate is inconclusive (inconclusive: no request metrics for the idle color)"
    )


def _slice(*pods: str, ready: bool = True) -> dict:
    return {"endpoints": [{"conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod}} for pod in pods]}


def test_endpoints_of_only_the_new_colors_pods_are_settled():
    slices = [_slice("orders-green-5d8f7c-abcde", "orders-green-5d8f7c-fghij")]

    assert decisions.endpoints_only_on(slices=slices, service="orders", color="green") is True


def test_endpoints_still_listing_an_old_colors_pod_are_not_settled():
    slices = [_slice("orders-green-5d8f7c-abcde"), _slice("orders-blue-7b9d4e-klmno")]

    assert decisions.endpoints_only_on(slices=slices, service="orders", color="green") is False


def test_endpoints_without_a_ready_pod_are_not_settled():
    slices = [_slice("orders-green-5d8f7c-abcde", ready=False)]

    assert decisions.endpoints_only_on(slices=slices, service="orders", color="green") is False


def test_capacity_shortfall_is_the_pods_the_idle_color_lacks():
    assert decisions.capacity_shortfall(live=_state(color="blue", desired=5), idle=_state(desired=2)) == 3


def test_capacity_shortfall_is_zero_when_the_idle_color_is_as_large():
    assert decisions.capacity_shortfall(live=_state(color="blue", desired=2), idle=_state(desired=4)) == 0


def test_rollback_is_allowed_while_the_previous_color_is_up():
    assert decisions.rollback_refusal(service="auth", previous=_state(color="blue")) is None


def test_rollback_is_refused_once_the_previous_color_is_scaled_down():
    gone = _state(color="blue", desired=0, updated=0, available=0, total=0)

    refusal = decisions.rollback_refusal(service="auth", previous=gone)

    assert refusal.next_step.startswith("if it is unready for a reason outside it (the shared database, say), roll")


def test_scale_down_is_allowed_when_the_live_color_is_available():
    assert decisions.scale_down_refusal(service="auth", live=_state(color="blue"), idle=_state()) is None


def test_scale_down_keeps_the_idle_color_while_the_live_one_is_not_available():
    refusal = decisions.scale_down_refusal(service="auth", live=_state(color="blue", available=1), idle=_state())

    assert refusal.next_step.startswith("roll back (python -m deploy.bluegreen rollback auth)")


def test_scale_down_of_a_color_already_at_zero_is_not_refused_there_is_nothing_to_do():
    idle = _state(desired=0, updated=0, available=0, total=0)

    assert decisions.scale_down_refusal(service="auth", live=_state(color="blue"), idle=idle) is None


def test_drain_wait_is_what_is_left_of_the_drain_time():
    switched = NOW - timedelta(seconds=45)

    assert decisions.drain_wait_seconds(last_switch_at=switched, now=NOW, drain_seconds=120) == 75.0


def test_drain_wait_is_zero_once_the_drain_time_has_passed():
    switched = NOW - timedelta(seconds=500)

    assert decisions.drain_wait_seconds(last_switch_at=switched, now=NOW, drain_seconds=120) == 0.0


def test_drain_wait_is_zero_without_a_recorded_switch():
    assert decisions.drain_wait_seconds(last_switch_at=None, now=NOW, drain_seconds=120) == 0.0


# --- the lock -------------------------------------------------------------------------------------------


def _lease(holder: str | None, renewed: datetime, duration: int = 60) -> dict:
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": duration,
        "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def test_no_lease_is_a_free_lock():
    assert decisions.lock_state(lease_spec=None, now=NOW, me="bob") is LockState.FREE


def test_a_released_lease_is_a_free_lock():
    assert decisions.lock_state(lease_spec=_lease(None, NOW), now=NOW, me="bob") is LockState.FREE


def test_a_lease_of_someone_else_within_its_duration_is_held():
    lease = _lease("alice", NOW - timedelta(seconds=59))

    assert decisions.lock_state(lease_spec=lease, now=NOW, me="bob") is LockState.HELD


def test_a_lease_past_its_duration_has_expired():
    lease = _lease("alice", NOW - timedelta(seconds=60))

    assert decisions.lock_state(lease_spec=lease, now=NOW, me="bob") is LockState.EXPIRED


def test_my_own_lease_is_mine():
    assert decisions.lock_state(lease_spec=_lease("bob", NOW), now=NOW, me="bob") is LockState.MINE


def test_lock_held_error_names_the_holder_and_how_to_free_it():
    error = decisions.lock_held_error(service="payments", lease_spec=_lease("alice deploy", NOW))

    assert str(error) == (
        "another operation on payments holds the lock: alice deploy since 2026-03-02T09:00:00.000000Z for 60 s\n"
        "Next: wait for it to finish (python -m deploy.bluegreen status payments); if that process is gone, the "
        "lock expires by itself, or delete it: kubectl -n platform delete lease bluegreen-payments"
    )


# --- records --------------------------------------------------------------------------------------------


def test_switch_record_says_who_when_from_to_and_version():
    record = decisions.switch_record(
        action="promote",
        actor="alice",
        at=NOW,
        from_color="blue",
        to_color="green",
        version="1.5.0",
        image="registry.example.com/platform:1.5.0",
        from_image="registry.example.com/platform:1.4.0",
        config="c0ffee000002",
        from_config="c0ffee000001",
    )

    assert record == {
        "action": "promote",
        "who": "alice",
        "when": "2026-03-02T09:00:00Z",
        "from": "blue",
        "to": "green",
        "version": "1.5.0",
        "image": "registry.example.com/platform:1.5.0",
        "from_image": "registry.example.com/platform:1.4.0",
        "config": "c0ffee000002",
        "from_config": "c0ffee000001",
    }


# --- declarative plans --------------------------------------------------------------------------------------

PROMOTION = {"action": "promote", "when": "2026-03-02T09:00:00Z", "from": "blue", "to": "green", "from_image": "a:1"}


def test_promotion_plan_is_nothing_when_the_image_is_live():
    plan = decisions.promotion_plan(service="auth", image="a:1", live=_state(color="blue", image="a:1"), idle=_state())

    assert plan is decisions.Plan.NOTHING


def test_promotion_plan_switches_to_the_idle_color_running_the_image():
    live, idle = _state(color="blue", image="a:1"), _state(image="a:2")

    assert decisions.promotion_plan(service="auth", image="a:2", live=live, idle=idle) is decisions.Plan.SWITCH


def test_promotion_plan_refuses_an_image_neither_color_runs():
    with pytest.raises(decisions.BlueGreenError, match="a:3 is on neither"):
        decisions.promotion_plan(
            service="auth", image="a:3", live=_state(color="blue", image="a:1"), idle=_state(image="a:2")
        )


def test_promotion_plan_with_a_configuration_wants_the_image_and_the_configuration_live():
    live = _state(color="blue", image="a:1", config="c1")

    assert decisions.promotion_plan(service="auth", image="a:1", live=live, idle=_state(), config="c1") is (
        decisions.Plan.NOTHING
    )
    assert (
        decisions.promotion_plan(
            service="auth", image="a:1", live=live, idle=_state(image="a:1", config="c2"), config="c2"
        )
        is decisions.Plan.SWITCH
    )


def test_promotion_plan_refuses_the_image_with_a_configuration_neither_color_runs():
    with pytest.raises(decisions.BlueGreenError, match="a:1 with configuration c3 is on neither") as refused:
        decisions.promotion_plan(
            service="auth",
            image="a:1",
            live=_state(color="blue", image="a:1", config="c1"),
            idle=_state(image="a:1", config="c2"),
            config="c3",
        )

    assert "deploy auth a:1 --manifests" in refused.value.next_step


def test_rollback_plan_refuses_a_previous_color_given_another_configuration_since():
    promotion = {**PROMOTION, "from_config": "c1"}
    live, idle = _state(color="green", image="a:2", config="c2"), _state(color="blue", image="a:1", config="c9")

    with pytest.raises(
        decisions.BlueGreenError, match="runs a:1 with configuration c9 now, not a:1 with configuration c1"
    ):
        decisions.rollback_plan(service="auth", history=[promotion], live=live, idle=idle, force=False)


def test_rollback_plan_takes_a_previous_color_on_the_configuration_it_had():
    promotion = {**PROMOTION, "from_config": "c1"}
    live, idle = _state(color="green", image="a:2", config="c2"), _state(color="blue", image="a:1", config="c1")

    plan = decisions.rollback_plan(service="auth", history=[promotion], live=live, idle=idle, force=False)

    assert (plan.plan, plan.to_color) == (decisions.Plan.SWITCH, "blue")


def test_rollback_plan_returns_to_the_last_promotions_previous_color():
    live, idle = _state(color="green", image="a:2"), _state(color="blue", image="a:1")

    plan = decisions.rollback_plan(service="auth", history=[PROMOTION], live=live, idle=idle, force=False)

    assert plan == decisions.RollbackPlan(plan=decisions.Plan.SWITCH, to_color="blue", image="a:1")


def test_rollback_plan_is_nothing_once_the_previous_color_is_live_again():
    rolled_back = {**PROMOTION, "action": "rollback", "from": "green", "to": "blue"}
    live, idle = _state(color="blue", image="a:1"), _state(color="green", image="a:2")

    plan = decisions.rollback_plan(service="auth", history=[rolled_back, PROMOTION], live=live, idle=idle, force=False)

    assert plan.plan is decisions.Plan.NOTHING


def test_rollback_plan_refuses_a_previous_color_that_runs_another_image_since():
    live, idle = _state(color="green", image="a:2"), _state(color="blue", image="a:9")

    with pytest.raises(decisions.BlueGreenError, match="runs a:9 now, not a:1"):
        decisions.rollback_plan(service="auth", history=[PROMOTION], live=live, idle=idle, force=False)


def test_a_forced_rollback_plan_takes_a_previous_color_that_is_not_fully_available():
    live = _state(color="green", image="a:2")
    idle = _state(color="blue", image="a:1", available=1)

    plan = decisions.rollback_plan(service="auth", history=[PROMOTION], live=live, idle=idle, force=True)

    assert plan.plan is decisions.Plan.SWITCH


def test_history_keeps_the_newest_switches_first_and_at_most_ten():
    history = [{"n": number} for number in range(10)]

    assert decisions.history_with(history=history, record={"n": "new"}) == [{"n": "new"}, *history[:9]]
