"""The gate's PromQL evaluated by the real Prometheus engine (`promtool test rules`) on series named as
django-prometheus exports them and labelled as the Kubernetes scrape job labels them."""

import shutil
import subprocess

import yaml

from deploy.bluegreen.gate import ERRORS_QUERY, P95_QUERY, REQUESTS_QUERY

# `make test` installs it (Debian's prometheus); a missing promtool fails these tests, never skips them.
PROMTOOL = shutil.which("promtool") or "promtool"
LABELS = 'service="orders",color="green"'
RESPONSES = "django_http_responses_total_by_status_total"
BUCKETS = "django_http_requests_latency_seconds_by_view_method_bucket"
# One minute apart: green answers 100 requests with 200 and 1 with 500 a minute; blue, also scraped,
# answers 50 with 500 a minute and must not count. Latency buckets: 90 under 0.1 s, 99 under 0.25 s.
INPUT_SERIES = [
    {"series": f'{RESPONSES}{{service="orders",color="green",status="200"}}', "values": "0+100x10"},
    {"series": f'{RESPONSES}{{service="orders",color="green",status="500"}}', "values": "0+1x10"},
    {"series": f'{RESPONSES}{{service="orders",color="blue",status="500"}}', "values": "0+50x10"},
    {"series": f'{BUCKETS}{{service="orders",color="green",view="x",method="GET",le="0.1"}}', "values": "0+90x10"},
    {"series": f'{BUCKETS}{{service="orders",color="green",view="x",method="GET",le="0.25"}}', "values": "0+99x10"},
    {"series": f'{BUCKETS}{{service="orders",color="green",view="x",method="GET",le="+Inf"}}', "values": "0+101x10"},
]


def _promtool_test(tmp_path, expression: str, expected: float) -> subprocess.CompletedProcess:
    test_file = tmp_path / "gate_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": INPUT_SERIES,
                        "promql_expr_test": [
                            {
                                "expr": expression,
                                "eval_time": "10m",
                                "exp_samples": [{"labels": "{}", "value": expected}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_request_count_is_the_idle_colors_requests_in_the_window(tmp_path):
    completed = _promtool_test(tmp_path, REQUESTS_QUERY.format(labels=LABELS, window="5m"), 505)

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_error_count_is_the_idle_colors_5xx_only(tmp_path):
    completed = _promtool_test(tmp_path, ERRORS_QUERY.format(labels=LABELS, window="5m"), 5)

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_p95_is_interpolated_within_the_bucket_that_holds_it(tmp_path):
    # 0.1 + (0.25 - 0.1) * (0.95 * 101 - 90) / 9 = 0.19917 (to float precision, hence the bounds)
    p95 = P95_QUERY.format(labels=LABELS, window="5m")

    completed = _promtool_test(tmp_path, f"(({p95}) > bool 0.19916) * (({p95}) < bool 0.19917)", 1)

    assert completed.returncode == 0, completed.stdout + completed.stderr
