"""The metrics gate before a switch: the idle color's error rate and p95 latency, read from Prometheus.

The series are django-prometheus' (names as scraped, with the extra `_total`), and the scrape job must
label each target with `service` and `color` from the pod labels `app.kubernetes.io/name` and `color`
(deploy/README.md shows the relabelling). An unreachable Prometheus or an empty answer is no data,
and no data is inconclusive, never a pass.
"""

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


def query_scalar(*, prometheus_url: str, query: str, timeout_seconds: float = 10.0) -> float | None:
    """The single value of an instant query, or None when Prometheus has no (finite) value for it."""
    try:
        response = requests.get(
            f"{prometheus_url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=timeout_seconds
        )
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        raise PrometheusError(f"Prometheus at {prometheus_url} did not answer: {error.__class__.__name__}") from error
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query ({response.status_code}): {body.get('error', '')}")
    result = body.get("data", {}).get("result", [])
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def gate_check(*, prometheus_url: str, service: str, color: str, window: str, thresholds: GateThresholds) -> GateResult:
    labels = f'service="{service}",color="{color}"'
    try:
        requests_count = query_scalar(
            prometheus_url=prometheus_url, query=REQUESTS_QUERY.format(labels=labels, window=window)
        )
        errors = query_scalar(prometheus_url=prometheus_url, query=ERRORS_QUERY.format(labels=labels, window=window))
        p95 = query_scalar(prometheus_url=prometheus_url, query=P95_QUERY.format(labels=labels, window=window))
    except PrometheusError as error:
        return GateResult(GateOutcome.INCONCLUSIVE, (str(error),))
    return gate_verdict(requests=requests_count, errors=errors, p95_seconds=p95, thresholds=thresholds)
