"""/metrics of a gunicorn server adds up every worker's counts (prometheus_client multiprocess mode)."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.client import requests_counted
from tests.e2e.flows import wait_for

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

    def jwks_access_lines() -> list[dict]:
        lines = [json.loads(line) for line in auth.log_text()[log_offset:].splitlines() if line.startswith("{")]
        return [line for line in lines if line["logger"] == "apps.access" and line["path"] == "/.well-known/jwks.json"]

    # Access lines are written a moment after their requests (apps.core.logging.StdoutHandler).
    access_lines = wait_for(lambda: len(jwks_access_lines()) >= sent and jwks_access_lines(), timeout=10)
    workers = {line["pid"] for line in access_lines}
    assert len(workers) == 2, f"all {sent} requests went to one worker; the test proves nothing"
    assert after - before == sent


def test_metrics_survive_a_worker_restart_without_losing_counts(stack):
    """Counts of a worker that exits stay in the total (child_exit folds its files into the archives)."""
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


def worker_pids(service) -> set[int]:
    return set(service.workers())


def test_exited_workers_leave_no_files_behind_and_their_counts_stay(stack):
    """Ten workers replaced one after another: the directory keeps one set of files per live worker
    plus the archives, and every request any of them served is still counted, once."""
    notifications = stack["notifications"]
    directory = Path(notifications.process_env()["PROMETHEUS_MULTIPROC_DIR"])
    for _ in range(10):
        requests.get(f"{notifications.url}/api/schema/", headers={"Connection": "close"}, timeout=5)
    before = requests_counted(notifications.url, "schema")
    first_files = {path.name for path in directory.glob("*.db")}
    pids_seen = set(worker_pids(notifications))
    for _ in range(10):
        os.kill(notifications.process.pid, signal.SIGTTOU)  # one worker fewer: it exits
        deadline = time.monotonic() + 10
        while len(worker_pids(notifications)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(notifications.process.pid, signal.SIGTTIN)  # one more: a new pid
        notifications.wait_ready()
        deadline = time.monotonic() + 10
        while len(worker_pids(notifications)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(4):  # the new workers write files of their own
            requests.get(f"{notifications.url}/api/schema/", headers={"Connection": "close"}, timeout=5)
        pids_seen |= worker_pids(notifications)
    after = requests_counted(notifications.url, "schema")
    live = worker_pids(notifications)
    files = sorted(path.name for path in directory.glob("*.db"))
    assert len(pids_seen) >= 10, pids_seen  # workers really were replaced
    # Only live workers' files and the archives remain, however many workers came and went.
    owners = {name.removesuffix(".db").rpartition("_")[2] for name in files}
    assert owners <= {str(pid) for pid in live} | {"archive"}, (files, live)
    assert any(name.endswith("_archive.db") for name in files), files
    assert len(files) <= len(first_files) + 4, (first_files, files)
    # The scrapes in between each counted too (the schema view is what requests_counted reads).
    assert after == before + 40, (before, after)
