"""perf/costs.py, the in-process cost of one request, run as a developer runs it: what it reports,
and that the production logging it measures writes nowhere a terminal would slow down."""

import importlib.util
import os
import re
import subprocess
import sys

from django.conf import settings

from tests.live import REPO


def costs(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "perf" / "costs.py"), *arguments],
        cwd=REPO,
        # Without --database-url the tool uses a SQLite file of its own, whatever the shell points at.
        env={**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_an_order_read_is_measured_with_its_queries_and_no_log_line_reaches_stdout():
    result = costs("order_detail", "--requests", "30", "--warmup", "5", "--queries")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # every log line (one per request at least) went to /dev/null
    measured = re.search(
        r"^order_detail: 30 requests, ([0-9.]+) ms CPU and ([0-9.]+) ms wall per request$", result.stderr, re.M
    )
    assert measured is not None, result.stderr[-3000:]
    assert float(measured[1]) > 0 and float(measured[2]) > 0
    statements = re.findall(r"^\s+\d+ (SELECT|INSERT|UPDATE|DELETE)\b", result.stderr, re.M)
    assert statements and set(statements) == {"SELECT"}, result.stderr[-3000:]  # a read writes nothing


def test_the_floor_under_every_endpoint_is_measured_through_the_whole_middleware():
    for endpoint in ("empty_drf", "empty_django"):
        result = costs(endpoint, "--requests", "20", "--warmup", "5", "--queries")
        assert result.returncode == 0, result.stderr[-3000:]  # any answer but 200 stops the tool
        assert re.search(rf"^{endpoint}: 20 requests, [0-9.]+ ms CPU", result.stderr, re.M), result.stderr[-3000:]
        # Neither view reads the database: the token is verified from the signing key, not from auth.
        assert not re.findall(r"^\s+\d+ (SELECT|INSERT|UPDATE|DELETE)\b", result.stderr, re.M), result.stderr[-3000:]


def offered_endpoints() -> tuple[str, ...]:
    """The endpoints perf/costs.py accepts (its ENDPOINTS; the module imports nothing but the standard library)."""
    spec = importlib.util.spec_from_file_location("perf_costs", REPO / "perf" / "costs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ENDPOINTS


def test_every_endpoint_the_tool_offers_is_measured():
    # Those the tests above do not run: each request must be answered as the tool expects, or it stops.
    writes = {"order_create": {"INSERT", "UPDATE"}, "payment_create": {"INSERT", "UPDATE"}}
    rest = [
        endpoint for endpoint in offered_endpoints() if endpoint not in {"order_detail", "empty_drf", "empty_django"}
    ]
    assert {"healthz", "order_list", "order_create", "payment_create"} <= set(rest)
    for endpoint in rest:
        result = costs(endpoint, "--requests", "5", "--warmup", "2", "--queries")
        assert result.returncode == 0, result.stderr[-3000:]
        assert re.search(rf"^{endpoint}: 5 requests, [0-9.]+ ms CPU", result.stderr, re.M), result.stderr[-3000:]
        statements = set(re.findall(r"^\s+\d+ (SELECT|INSERT|UPDATE|DELETE)\b", result.stderr, re.M))
        assert writes.get(endpoint, set()) <= statements, (endpoint, result.stderr[-3000:])


def test_the_middleware_report_leaves_out_each_middleware_in_turn():
    result = costs("healthz", "--middleware", "--requests", "20", "--warmup", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^healthz: µs of CPU per request, best of \d+ rounds of 20, ", result.stderr, re.M)
    variant = r"the whole chain|without \S+(?: middleware)?"
    measured = dict(re.findall(rf"^({variant})\s+([0-9.]+)\b", result.stderr, re.M))
    refused = re.findall(rf"^({variant})\s+not answered without it: healthz: 404$", result.stderr, re.M)
    # A probe is answered by ProbeMiddleware alone: without it (or any middleware) it is a 404.
    assert refused == ["without apps.core.middleware.ProbeMiddleware", "without any middleware"], result.stderr[-3000:]
    chain = [name for name in measured if name != "the whole chain"] + refused[:1]
    assert "the whole chain" in measured and float(measured["the whole chain"]) > 0
    # Every middleware of the chain is left out once, in the chain's order (the settings' chain: the
    # tests' settings are the production ones, MIDDLEWARE untouched).
    left_out = [name.removeprefix("without ") for name in sorted(chain, key=result.stderr.index)]
    assert left_out == list(settings.MIDDLEWARE), result.stderr[-3000:]
    assert len(left_out) == 12 and "apps.core.middleware.ProbeMiddleware" in left_out


def test_the_middleware_report_measures_an_api_request_without_any_middleware():
    result = costs("empty_drf", "--middleware", "--requests", "20", "--warmup", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not answered" not in result.stderr, result.stderr[-3000:]
    without_any = re.search(r"^without any middleware\s+([0-9.]+)\s+(-?[0-9.]+)$", result.stderr, re.M)
    assert without_any is not None, result.stderr[-3000:]
    assert float(without_any[1]) > 0
