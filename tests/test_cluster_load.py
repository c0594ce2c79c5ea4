"""What the cluster suite's load (tests/cluster/load.py) judges when it stops k6: the requests answered
before the stop, not those k6 cut short because of it. Here a stand-in for k6 writes its console log
the way k6 does (JSON lines whose `msg` is the script's own line, stamped in whole milliseconds). And
the suite's own reads through a Service allow what a request of the load allows."""

import re
import subprocess
import sys
import textwrap
import time

from tests.cluster.kube import LOAD_REQUEST_TIMEOUT_SECONDS, REPO
from tests.cluster.load import Load

STAND_IN = textwrap.dedent(
    """
    import json, signal, sys, time

    console = open(sys.argv[1], "a", buffering=1)

    def line(status, error):
        entry = {"t": int(time.time() * 1000), "n": "order_create", "s": status, "e": error, "d": 9.5, "v": "", "c": ""}
        console.write(json.dumps({"level": "info", "msg": json.dumps(entry)}) + "\\n")

    def interrupted(*_):
        line(0, 1000)  # a request in flight, cut by the stop, as k6 logs it
        sys.exit(0)

    signal.signal(signal.SIGINT, interrupted)
    line(201, 0)
    print("answered", flush=True)
    time.sleep(60)
    """
)


def test_requests_cut_by_the_stop_are_not_judged_even_within_its_millisecond(tmp_path):
    load = Load(cluster=None, workdir=tmp_path)
    for _ in range(20):  # the cut request is stamped in the stop's own millisecond some of the time
        load.console.unlink(missing_ok=True)
        load.result = None
        load.process = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, str(load.console)], stdout=subprocess.PIPE, text=True
        )
        assert load.process.stdout.readline() == "answered\n"
        time.sleep(0.005)  # answered a few milliseconds before the stop
        result = load.stop(timeout=10)

        assert [request.status for request in load.requests()] == [201, 0]
        assert [(request.status, request.error_code) for request in result.requests] == [(201, 0)]
        assert result.failed == []
        load.process.stdout.close()


def test_the_suites_own_reads_through_a_service_wait_as_long_as_a_request_of_the_load():
    """A setup read (`Cluster.version`) that gave up sooner than k6 does would fail a release on a slow
    node where the load, waiting the same time, was answered."""
    library = (REPO / "perf" / "k6" / "lib.js").read_text()
    timeout = re.search(r"export const REQUEST_TIMEOUT = '(\d+)s';", library)
    assert timeout is not None, "perf/k6/lib.js no longer says REQUEST_TIMEOUT in seconds"
    assert int(timeout.group(1)) == LOAD_REQUEST_TIMEOUT_SECONDS
