"""The metrics gate before a switch: the idle color's error rate and p95 latency, read from Prometheus.

The series are django-prometheus' (names as scraped, with the extra `_total`), and the scrape job must
label each target with `service` and `color` from the pod labels `app.kubernetes.io/name` and `color`
(deploy/README.md shows the relabelling). An unreachable Prometheus or an empty answer is no data,
and no data is inconclusive, never a pass.
"""

import json
import math

import requests

from deploy.bluegreen.decisions import GateOutcome, GateResult, GateThresholds, gate_verdict

REQUESTS_QUERY = "sum(increase(django_http_responses_total_by_status_total{{{labels}}}[{window}]))"
ERRORS_QUERY = 'sum(increase(django_http_responses_total_by_status_total{{{labels},status=~"5.."}}[{window}]))'
P95_QUERY = (
    "histogram_quantile(0.95, sum by (le) "
    "(rate(django_http_requests_latency_seconds_by_view_method_bucket{{{labels}}}[{window}])))"
)


class PrometheusError(Exception):
    pass


class Prometheus:
    """Instant queries against Prometheus: at a URL, or through the API server's service proxy
    (`namespace/service:port`, by default monitoring/prometheus:web), which needs no route into the
    cluster, only the kubeconfig the tool already uses."""

    def __init__(self, *, url: str | None = None, cluster=None, service: str = "monitoring/prometheus:web"):
        self.url, self.cluster, self.service = url, cluster, service

    def describe(self) -> str:
        return self.url or f"Service {self.service} (through the API server)"

    def _get(self, query: str, timeout_seconds: float) -> tuple[int, str]:
        if self.url:
            response = requests.get(
                f"{self.url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=timeout_seconds
            )
            return response.status_code, response.text
        namespace, _, rest = self.service.partition("/")
        name, _, port = rest.partition(":")
        return self.cluster.proxy_query(
            namespace=namespace, service=name, port=port or "web", path="/api/v1/query", params={"query": query}
        )

    def query(self, query: str, *, timeout_seconds: float = 10.0) -> float | None:
        """The single value of an instant query, or None when Prometheus has no (finite) value for it."""
        try:
            status, text = self._get(query, timeout_seconds)
            body = json.loads(text)
        except (requests.RequestException, ValueError, OSError) as error:
            raise PrometheusError(
                f"Prometheus at {self.describe()} did not answer: {error.__class__.__name__}"
            ) from error
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise PrometheusError(f"Prometheus at {self.describe()} refused the query ({status}): {error}")
        result = body.get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None


def query_scalar(*, prometheus_url: str, query: str, timeout_seconds: float = 10.0) -> float | None:
    """The single value of an instant query at a Prometheus URL (see Prometheus.query)."""
    return Prometheus(url=prometheus_url).query(query, timeout_seconds=timeout_seconds)


def color_series(prometheus: Prometheus, *, service: str, color: str, window: str) -> tuple:
    """(requests, 5xx responses, p95 seconds) of one color over a window."""
    labels = f'service="{service}",color="{color}"'
    return (
        prometheus.query(REQUESTS_QUERY.format(labels=labels, window=window)),
        prometheus.query(ERRORS_QUERY.format(labels=labels, window=window)),
        prometheus.query(P95_QUERY.format(labels=labels, window=window)),
    )


def gate_check(*, prometheus_url: str, service: str, color: str, window: str, thresholds: GateThresholds) -> GateResult:
    try:
        requests_count, errors, p95 = color_series(
            Prometheus(url=prometheus_url), service=service, color=color, window=window
        )
    except PrometheusError as error:
        return GateResult(GateOutcome.INCONCLUSIVE, (str(error),))
    return gate_verdict(requests=requests_count, errors=errors, p95_seconds=p95, thresholds=thresholds)
