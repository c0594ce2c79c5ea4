"""The command line: arguments, exit codes, the actor recorded, errors with their next step."""

import json
import subprocess
import sys

import pytest
from kubernetes import client

from deploy.bluegreen.__main__ import build_parser, default_actor, main
from deploy.bluegreen.decisions import LAST_SWITCH_ANNOTATION
from deploy.tests.conftest import NEW_IMAGE


def _run(fake_kubernetes, clock, said, *argv: str) -> int:
    options = {"say": said.append, "now": clock.now, "monotonic": clock.monotonic, "sleep": clock.sleep}
    return main(["--actor", "ci-bot", *argv], api_client=fake_kubernetes.api_client(), **options)


# The fake API server's gate Job logs no verdict and it has no Prometheus: these tests are of the
# other steps (deploy/tests/test_release_gate.py has the gate's and the watch's).
UNGATED = ("--skip-gate", "--watch", "0")


def test_promote_runs_the_release_gate_unless_told_not_to(fake_kubernetes, clock, said, capsys):
    _run(fake_kubernetes, clock, said, "deploy", "auth", NEW_IMAGE)

    gated = _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, "--watch", "0")
    refusal = capsys.readouterr().err

    assert gated == 1
    assert "the release gate is inconclusive" in refusal
    assert "ended without a result" in refusal  # the fake's gate Job logs no verdict
    assert fake_kubernetes.get("services", "auth")["spec"]["selector"]["color"] == "blue"
    assert _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, *UNGATED) == 0
    assert fake_kubernetes.get("services", "auth")["spec"]["selector"]["color"] == "green"


def test_without_prometheus_the_watch_is_skipped_with_a_warning(fake_kubernetes, clock, said):
    _run(fake_kubernetes, clock, said, "deploy", "auth", NEW_IMAGE)

    assert _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, "--skip-gate") == 0
    assert any(line.startswith("warning: no watch after the switch") for line in said), said


def test_status_of_every_service_exits_zero(fake_kubernetes, clock, said):
    assert _run(fake_kubernetes, clock, said, "status") == 0


def test_status_without_a_service_reports_all_four(fake_kubernetes, clock, said):
    _run(fake_kubernetes, clock, said, "status")

    assert [line for line in said if not line.startswith(" ")] == [
        "auth: live color blue",
        "orders: live color blue",
        "payments: live color blue",
        "notifications: live color blue",
    ]


def test_a_deploy_and_promote_record_the_actor_given(fake_kubernetes, clock, said):
    _run(fake_kubernetes, clock, said, "deploy", "auth", NEW_IMAGE)
    _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, *UNGATED)

    annotations = fake_kubernetes.get("services", "auth")["metadata"]["annotations"]
    assert json.loads(annotations[LAST_SWITCH_ANNOTATION])["who"] == "ci-bot"


def test_a_refusal_exits_one(fake_kubernetes, clock, said):
    assert _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, *UNGATED) == 1


def test_the_state_already_reached_exits_zero_twice(fake_kubernetes, clock, said):
    _run(fake_kubernetes, clock, said, "deploy", "auth", NEW_IMAGE)

    assert [
        _run(fake_kubernetes, clock, said, "promote", "auth", "--image", NEW_IMAGE, *UNGATED) for _ in range(2)
    ] == [0, 0]
    assert [_run(fake_kubernetes, clock, said, "rollback", "auth") for _ in range(2)] == [0, 0]


def test_a_failure_after_the_switch_exits_three_and_says_traffic_moved(fake_kubernetes, clock, said, capsys):
    fake_kubernetes.objects.pop(("deployments", "platform", "payments-outbox-relay"))
    _run(fake_kubernetes, clock, said, "deploy", "payments", NEW_IMAGE)

    exit_code = _run(fake_kubernetes, clock, said, "promote", "payments", "--image", NEW_IMAGE, *UNGATED)

    assert (exit_code, capsys.readouterr().err.splitlines()[0]) == (
        3,
        "error: payments: traffic moved to green; 1 step(s) after the switch failed (above)",
    )


def test_promote_needs_the_image_it_makes_live():
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["promote", "orders"])

    assert exited.value.code == 2


def test_a_refusal_prints_the_problem_and_the_next_step(fake_kubernetes, clock, said, capsys):
    _run(fake_kubernetes, clock, said, "rollback", "payments")

    assert capsys.readouterr().err.splitlines() == [
        "error: no promotion of payments is recorded, so there is no earlier state to return to",
        "Next: python -m deploy.bluegreen status payments",
    ]


def test_an_unknown_service_is_a_usage_error():
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["deploy", "billing", NEW_IMAGE])

    assert exited.value.code == 2


def test_promote_takes_the_gate_thresholds():
    arguments = build_parser().parse_args(
        [
            "promote",
            "orders",
            "--image",
            NEW_IMAGE,
            "--prometheus-url",
            "http://prometheus:9090",
            "--max-error-rate",
            "0.02",
        ]
    )

    assert (arguments.prometheus_url, arguments.max_error_rate, arguments.max_p95_seconds, arguments.min_requests) == (
        "http://prometheus:9090",
        0.02,
        0.5,
        50,
    )


def test_the_actor_is_the_ci_user_in_github_actions(monkeypatch):
    monkeypatch.delenv("BLUEGREEN_ACTOR", raising=False)
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")

    assert default_actor() == "octocat"


def test_an_explicit_actor_variable_wins(monkeypatch):
    monkeypatch.setenv("BLUEGREEN_ACTOR", "release-bot")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")

    assert default_actor() == "release-bot"


def test_the_module_runs_as_a_command():
    completed = subprocess.run(
        [sys.executable, "-m", "deploy.bluegreen", "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    assert (completed.returncode, "{status,deploy,promote,rollback,scale-down}" in completed.stdout) == (0, True)


def test_a_forbidden_answer_points_at_the_role(fake_kubernetes, clock, said, capsys):
    fake_kubernetes.refusals[("PATCH", "/services/orders")] = 403
    _run(fake_kubernetes, clock, said, "deploy", "orders", NEW_IMAGE)

    exit_code = _run(fake_kubernetes, clock, said, "promote", "orders", "--image", NEW_IMAGE, *UNGATED)

    assert (exit_code, capsys.readouterr().err.splitlines()) == (
        1,
        [
            "error: the Kubernetes API answered 403 Forbidden",
            "Next: check the kubeconfig context, and that your identity is bound to Role bluegreen-operator in "
            "namespace platform (kubectl auth can-i patch services -n platform)",
        ],
    )


def test_an_unreachable_api_server_says_to_check_the_cluster(said, capsys):
    api_client = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    api_client.rest_client.pool_manager.connection_pool_kw["retries"] = False

    exit_code = main(["status", "auth"], api_client=api_client, say=said.append)

    assert (exit_code, capsys.readouterr().err.splitlines()[1]) == (
        1,
        "Next: check the cluster and your context: kubectl cluster-info",
    )
