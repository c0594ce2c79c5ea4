"""/metrics of a gunicorn server adds up every worker's counts (prometheus_client multiprocess mode)."""

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.client import requests_counted

pytestmark = pytest.mark.e2e


def test_metrics_count_requests_served_by_different_workers_together(stack):
    auth = stack["auth"]
    before = requests_counted(auth.url, "jwks")
    log_offset = len(auth.log_text())
    sent = 40

    def fetch(_) -> int:
        # A new connection per request, eight at a time: both workers' accept calls get some of them.
        return requests.get(
            f"{auth.url}/.well-known/jwks.json", headers={"Connection": "close"}, timeout=10
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(fetch, range(sent))) == [200] * sent
    after = requests_counted(auth.url, "jwks")

    access_lines = [
        json.loads(line)
        for line in auth.log_text()[log_offset:].splitlines()
        if line.startswith("{") and '"apps.access"' in line
    ]
    workers = {line["pid"] for line in access_lines if line["path"] == "/.well-known/jwks.json"}
    assert len(workers) == 2, f"all {sent} requests went to one worker; the test proves nothing"
    assert after - before == sent


def test_metrics_survive_a_worker_restart_without_losing_counts(stack):
    """Counts of a worker that exits stay in the total (its files remain; child_exit marks it dead)."""
    orders = stack["orders"]
    for _ in range(10):
        requests.get(f"{orders.url}/api/schema/", headers={"Connection": "close"}, timeout=5)
    before = requests_counted(orders.url, "schema")
    # SIGTTOU asks the gunicorn master to remove one worker, SIGTTIN to add one: a worker replaced.
    os.kill(orders.process.pid, signal.SIGTTOU)
    os.kill(orders.process.pid, signal.SIGTTIN)
    orders.wait_ready()
    after = requests_counted(orders.url, "schema")
    assert after == before
