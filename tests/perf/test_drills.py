"""perf/drills.py's reading of k6's output and its phases, on a real k6 run of perf/k6/drill.js.

The drills themselves (minutes each, one restarts PostgreSQL) run with `make drills`; their recorded
results are in perf/results. This checks the parts whose mistakes would make a verdict wrong.
"""

import importlib.util
import sys

import pytest

from tests.live import REPO
from tests.perf.test_k6_scenarios import K6, k6_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def drills():
    sys.path.insert(0, str(REPO / "perf"))  # drills.py imports bench.py beside it, as when run as a script
    spec = importlib.util.spec_from_file_location("drills", REPO / "perf" / "drills.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_every_request_of_a_drill_run_is_read_from_k6s_output_by_the_time_it_was_sent(stack, tmp_path, drills):
    output = tmp_path / "k6.json"
    result, summary = k6_run(
        stack, "drill.js", tmp_path / "summary.json", RATE="2", DURATION="3s", USERS="2", K6_OUT=f"json={output}"
    )
    assert result.returncode == 0, result.stdout + result.stderr

    sent = drills.requests_from_k6(output)
    by_name = {}
    for request in sent:
        by_name[request.name] = by_name.get(request.name, 0) + 1
    journeys = summary["metrics"]["iterations"]["values"]["count"]
    assert by_name == {
        "setup_register": 2,
        "setup_login": 2,
        "order_create": journeys,
        "order_list": journeys,
        "order_detail": journeys,
        "inbox": journeys,
    }
    assert {request.status for request in sent if request.name == "order_create"} == {201}
    assert {request.status for request in sent if request.name != "order_create" and "setup" not in request.name} == {
        200
    }
    assert [request.started for request in sent] == sorted(request.started for request in sent)
    assert sent[-1].started - sent[0].started < 10
    assert K6.exists()


def test_phases_split_by_when_a_request_was_sent(drills):
    window = drills.Window(start=100.0, end=110.0, settle=5.0)
    sent = [
        drills.Request(99.9, "order_list", 200, 0.01),
        drills.Request(100.0, "order_list", 0, 0.5),
        drills.Request(114.9, "order_list", 503, 0.02),
        drills.Request(115.0, "order_list", 200, 0.03),
    ]
    stats = drills.table(sent, window)["order_list"]
    assert {phase: (s.count, s.failed, s.statuses) for phase, s in stats.items()} == {
        "before": (1, 0, {200: 1}),
        "during": (2, 2, {0: 1, 503: 1}),
        "after": (1, 0, {200: 1}),
    }
    assert drills.no_server_errors({"order_list": stats}).passed
    assert not drills.no_failures({"order_list": stats}, ("order_list",), ("before", "during", "after")).passed
    assert drills.no_failures({"order_list": stats}, ("order_list",), ("before", "after")).passed


def test_the_drills_to_run_are_all_by_default_and_an_unknown_one_is_refused(drills, capsys):
    assert drills.parse([]).drills == []
    assert drills.parse(["auth-hung"]).drills == ["auth-hung"]
    with pytest.raises(SystemExit):
        drills.parse(["no-such-drill"])
    assert "no such drill: no-such-drill" in capsys.readouterr().err
