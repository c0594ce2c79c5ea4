"""The release gate before a switch and the watch after it, driving the real kubernetes client
against the fake API server (fake_kubernetes.py): the gate's Job, its log, Prometheus through the
API server's service proxy, and the rollback the watch makes by itself."""

import json

import pytest

from deploy.bluegreen import commands, gate
from deploy.bluegreen.__main__ import EXIT_ROLLED_BACK, main
from deploy.bluegreen.decisions import (
    BlueGreenError,
    ComparisonThresholds,
    RolledBackError,
    TrafficSample,
    WatchThresholds,
    comparison_verdict,
    duration_seconds,
    gate_job,
    gate_result_line,
    version_label,
    watch_verdict,
)
from deploy.tests.conftest import NEW_IMAGE


def result_line(idle: dict, live: dict) -> str:
    return "some k6 output\nGATE-RESULT " + json.dumps({"idle": idle, "live": live}) + "\n"


HEALTHY = {"requests": 300, "p95_ms": 42.0, "server_error_rate": 0.0, "client_error_rate": 0.0}
SLOW = {"requests": 300, "p95_ms": 910.0, "server_error_rate": 0.0, "client_error_rate": 0.0}


def _selector_color(fake, name: str = "orders") -> str:
    return fake.get("services", name)["spec"]["selector"]["color"]


def _deployed(ctx):
    commands.deploy(ctx, service="orders", image=NEW_IMAGE)


# --- the gate's decisions, as plain functions -------------------------------------------------------------


def sample(**values) -> TrafficSample:
    return TrafficSample.from_summary({**HEALTHY, **values})


THRESHOLDS = ComparisonThresholds()


def test_the_same_answers_on_both_colors_pass():
    assert comparison_verdict(idle=sample(), live=sample(), thresholds=THRESHOLDS).outcome == "pass"


@pytest.mark.parametrize(
    ("idle", "reason"),
    [
        ({"p95_ms": 120.0}, "p95 120 ms against 42 ms on the live color (limit 113 ms)"),
        ({"server_error_rate": 0.02}, "5xx 2.00% against 0.00% on the live color"),
        ({"client_error_rate": 0.05}, "unexpected 4xx 5.00% against 0.00% on the live color"),
    ],
)
def test_a_color_worse_than_the_live_one_fails(idle, reason):
    result = comparison_verdict(idle=sample(**idle), live=sample(), thresholds=THRESHOLDS)

    assert (result.outcome, result.reasons[0].startswith(reason)) == ("fail", True), result.reasons


def test_errors_the_live_color_has_too_are_not_the_releases_fault():
    both = {"server_error_rate": 0.03, "client_error_rate": 0.04}

    assert comparison_verdict(idle=sample(**both), live=sample(**both), thresholds=THRESHOLDS).outcome == "pass"


def test_too_few_requests_or_missing_numbers_are_inconclusive():
    assert comparison_verdict(idle=sample(requests=20), live=sample(), thresholds=THRESHOLDS).outcome == "inconclusive"
    assert comparison_verdict(idle=sample(p95_ms=None), live=sample(), thresholds=THRESHOLDS).outcome == "inconclusive"


def test_the_verdict_line_is_the_last_gate_result_of_the_log():
    log = 'GATE-RESULT {"old": 1}\nnoise\n' + result_line(HEALTHY, SLOW) + "more noise\n"

    assert gate_result_line(log) == {"idle": HEALTHY, "live": SLOW}
    assert gate_result_line("no verdict here\n") is None
    assert gate_result_line("GATE-RESULT not json\n") is None


def test_durations_as_k6_writes_them():
    assert [duration_seconds(value) for value in ("30s", "2m", "1m30s", "1h", "45")] == [30, 120, 90, 3600, 45]
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("soon")


def test_the_gate_job_is_the_templates_pod_told_which_service_and_colors(rendered):
    template = next(obj for obj in rendered["kind"] if obj["kind"] == "PodTemplate")

    job = gate_job(template=template, service="payments", run="ab12cd34", namespace="platform")

    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert job["metadata"]["name"] == "payments-gate-ab12cd34"
    assert (env["SERVICE"], env["IDLE_URL"], env["LIVE_URL"]) == (
        "payments",
        "http://payments-preview.platform.svc.cluster.local",
        "http://payments.platform.svc.cluster.local",
    )
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "gate"
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 10 + 30 + 180)
    assert template["template"]["spec"]["containers"][0]["env"] != container["env"]  # the template is untouched


def test_the_watch_judges_against_the_old_colors_latency():
    thresholds = WatchThresholds()
    verdict = watch_verdict(requests=200, errors=0, p95_seconds=0.35, baseline_p95_seconds=0.1, thresholds=thresholds)
    assert verdict.outcome == "fail"  # 0.35 s > 0.1 s x 2 + 0.1 s
    assert (
        watch_verdict(requests=200, errors=0, p95_seconds=0.25, baseline_p95_seconds=0.1, thresholds=thresholds).outcome
        == "pass"
    )
    assert (
        watch_verdict(requests=200, errors=4, p95_seconds=0.05, baseline_p95_seconds=0.1, thresholds=thresholds).outcome
        == "fail"
    )
    assert (
        watch_verdict(requests=5, errors=5, p95_seconds=9, baseline_p95_seconds=0.1, thresholds=thresholds).outcome
        == "inconclusive"
    )


# --- the gate against the fake cluster -------------------------------------------------------------------


def test_a_release_that_answers_like_the_live_color_is_promoted(ctx, fake_kubernetes, said):
    _deployed(ctx)
    fake_kubernetes.job_log = result_line(HEALTHY, HEALTHY)

    commands.promote(ctx, service="orders", image=NEW_IMAGE, gate_options=commands.GateOptions())

    job = next(
        obj
        for (plural, _, _), obj in fake_kubernetes.objects.items()
        if plural == "jobs" and "-gate-" in obj["metadata"]["name"]
    )
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "orders"
    assert _selector_color(fake_kubernetes) == "green"
    assert any(line.startswith("release gate for orders green: pass") for line in said), said


def test_a_slower_release_is_refused_and_the_traffic_stays(ctx, fake_kubernetes):
    _deployed(ctx)
    fake_kubernetes.job_log = result_line(SLOW, HEALTHY)

    with pytest.raises(BlueGreenError, match=r"orders green failed the release gate \(fail: p95 910 ms against 42 ms"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, gate_options=commands.GateOptions())

    assert _selector_color(fake_kubernetes) == "blue"


def test_a_gate_job_that_fails_without_a_verdict_is_inconclusive(ctx, fake_kubernetes):
    _deployed(ctx)
    fake_kubernetes.job_outcome = "failed"
    fake_kubernetes.job_log = "ERRO[0001] registering the gate's reader: 429\n"

    with pytest.raises(BlueGreenError, match=r"the release gate is inconclusive .*registering the gate's reader: 429"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, gate_options=commands.GateOptions())

    assert _selector_color(fake_kubernetes) == "blue"


def test_a_gate_job_that_never_finishes_is_inconclusive_after_its_timeout(ctx, fake_kubernetes, clock):
    _deployed(ctx)
    fake_kubernetes.job_outcome = "running"

    with pytest.raises(BlueGreenError, match="did not finish in 60 s"):
        commands.promote(ctx, service="orders", image=NEW_IMAGE, gate_options=commands.GateOptions(timeout_seconds=60))

    assert _selector_color(fake_kubernetes) == "blue"


# --- the watch after the switch ------------------------------------------------------------------------


def prometheus_seeing(*, new_p95: float, new_errors: float = 0.0, requests: float = 300.0):
    """Prometheus' answers: blue (the old color) at 50 ms, green (the new one) as given."""

    def answer(query: str) -> float | None:
        new = 'color="green"' in query
        if "histogram_quantile" in query:
            return new_p95 if new else 0.05
        if 'status=~"5.."' in query:
            return new_errors if new else 0.0
        return requests

    return answer


def watch_options(fake_kubernetes, ctx) -> commands.WatchOptions:
    return commands.WatchOptions(prometheus=gate.Prometheus(cluster=ctx.cluster), seconds=60)


def test_a_release_that_degrades_after_the_switch_is_rolled_back_by_the_watch(ctx, fake_kubernetes, said):
    _deployed(ctx)
    fake_kubernetes.prometheus = prometheus_seeing(new_p95=0.9)

    with pytest.raises(RolledBackError, match=r"orders: .* went live on green, degraded .* rolled back to blue"):
        commands.promote_and_watch(
            ctx, service="orders", image=NEW_IMAGE, watch_options=watch_options(fake_kubernetes, ctx)
        )

    assert _selector_color(fake_kubernetes) == "blue"
    history = [line for line in said if line.startswith("watch orders green")]
    assert len(history) == WatchThresholds().bad_ticks  # two degraded windows in a row, then the rollback
    assert all(
        'service="orders",color="green"' in query or 'color="blue"' in query for query in fake_kubernetes.queries
    )


def test_a_release_that_stays_healthy_stays_live(ctx, fake_kubernetes, said, clock):
    _deployed(ctx)
    fake_kubernetes.prometheus = prometheus_seeing(new_p95=0.06)

    commands.promote_and_watch(
        ctx, service="orders", image=NEW_IMAGE, watch_options=watch_options(fake_kubernetes, ctx)
    )

    assert _selector_color(fake_kubernetes) == "green"
    assert "watch orders green: healthy for 60 s; " in said[-1]
    assert len([line for line in said if line.startswith("watch orders green: pass")]) == 60 // 5


def test_one_bad_window_alone_does_not_roll_back(ctx, fake_kubernetes):
    _deployed(ctx)
    answers = iter([0.9] + [0.06] * 100)
    healthy = prometheus_seeing(new_p95=0.06)

    def flaky(query: str) -> float | None:
        if "histogram_quantile" in query and 'color="green"' in query:
            return next(answers)
        return healthy(query)

    fake_kubernetes.prometheus = flaky
    commands.promote_and_watch(
        ctx, service="orders", image=NEW_IMAGE, watch_options=watch_options(fake_kubernetes, ctx)
    )

    assert _selector_color(fake_kubernetes) == "green"


def test_the_command_line_exits_four_after_rolling_back_by_itself(fake_kubernetes, clock, said, capsys):
    context = {"say": said.append, "now": clock.now, "monotonic": clock.monotonic, "sleep": clock.sleep}
    main(["--actor", "ci-bot", "deploy", "orders", NEW_IMAGE], api_client=fake_kubernetes.api_client(), **context)
    fake_kubernetes.prometheus = prometheus_seeing(new_p95=0.05, new_errors=30)  # 10 % 5xx
    fake_kubernetes.job_log = result_line(HEALTHY, HEALTHY)

    exit_code = main(
        ["--actor", "ci-bot", "promote", "orders", "--image", NEW_IMAGE, "--watch", "30"],
        api_client=fake_kubernetes.api_client(),
        **context,
    )

    assert exit_code == EXIT_ROLLED_BACK == 4
    assert "was rolled back to blue" in capsys.readouterr().err
    assert _selector_color(fake_kubernetes) == "blue"


@pytest.mark.parametrize(
    ("image", "label"),
    [
        ("ghcr.io/acme/platform:1.5.0", "1.5.0"),
        ("platform-app:next", "next"),
        ("ghcr.io/acme/platform@sha256:" + "ab" * 32, "sha256-abababababab"),
        ("registry:5000/platform", "latest"),
        ("platform:" + "v" * 80, "v" * 63),
    ],
)
def test_the_version_label_is_a_valid_label_value_of_the_image(image, label):
    assert version_label(image) == label


def test_deploy_labels_the_idle_colors_pods_with_the_version(ctx, fake_kubernetes):
    commands.deploy(ctx, service="orders", image="ghcr.io/acme/platform:1.5.0")

    labels = fake_kubernetes.get("deployments", "orders-green")["spec"]["template"]["metadata"]["labels"]
    assert (labels["app.kubernetes.io/version"], labels["color"]) == ("1.5.0", "green")


def test_a_watch_with_nothing_to_judge_says_so_and_leaves_the_release_live(ctx, fake_kubernetes, said):
    _deployed(ctx)
    fake_kubernetes.prometheus = prometheus_seeing(new_p95=0.9, requests=3)  # too few requests to judge

    commands.promote_and_watch(
        ctx, service="orders", image=NEW_IMAGE, watch_options=watch_options(fake_kubernetes, ctx)
    )

    assert _selector_color(fake_kubernetes) == "green"
    assert said[-1].startswith("warning: watch orders green: nothing to judge at the end of 60 s"), said[-1]
