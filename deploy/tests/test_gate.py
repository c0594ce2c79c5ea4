"""Reading the gate's numbers from Prometheus' HTTP API (a fake Prometheus answers)."""

import pytest

from deploy.bluegreen import gate
from deploy.bluegreen.decisions import GateOutcome, GateThresholds
from deploy.tests.fake_prometheus import FakePrometheus


@pytest.fixture
def prometheus():
    servers = []

    def start(answers: dict[str, str | None]) -> FakePrometheus:
        servers.append(FakePrometheus(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_query_scalar_reads_the_single_value(prometheus):
    server = prometheus({"up": "42.5"})

    assert gate.query_scalar(prometheus_url=server.url, query="sum(up)") == 42.5


def test_query_scalar_of_an_empty_result_is_none(prometheus):
    server = prometheus({})

    assert gate.query_scalar(prometheus_url=server.url, query="sum(up)") is None


def test_query_scalar_of_nan_is_none(prometheus):
    server = prometheus({"histogram_quantile": "NaN"})

    assert gate.query_scalar(prometheus_url=server.url, query="histogram_quantile(0.95, x)") is None


def test_query_scalar_of_an_unreachable_prometheus_raises():
    with pytest.raises(gate.PrometheusError, match="did not answer: ConnectionError"):
        gate.query_scalar(prometheus_url="http://127.0.0.1:9", query="up", timeout_seconds=1)


def test_a_nan_latency_makes_the_gate_inconclusive(prometheus):
    server = prometheus({'status=~"5.."': "0", "histogram_quantile": "NaN", "increase(": "500"})

    result = gate.gate_check(
        prometheus_url=server.url, service="auth", color="green", window="5m", thresholds=GateThresholds()
    )

    assert result.outcome is GateOutcome.INCONCLUSIVE
