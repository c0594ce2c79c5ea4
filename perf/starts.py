"""What starting a service costs, with the application loaded once in gunicorn's arbiter before it
forks the workers (GUNICORN_PRELOAD=true, the default) and loaded in each worker (false): the CPU a
start takes until the service is ready, the time it takes, its first requests against the later
ones, and the memory its processes hold once they have served.

    .venv/bin/python perf/starts.py                       # SQLite, 4 starts of orders in each mode
    .venv/bin/python perf/starts.py --rounds 6 --database-url postgres://postgres@127.0.0.1:5432/postgres

auth and payments run throughout (stack_start, as the e2e tests run them); orders is started again
and again, the two modes taking turns, so that a machine busy for a moment does not land on one mode
alone. Each start is measured from the spawn until /readyz answers 200 with both workers booted: the
CPU time of the arbiter and its workers (from /proc, user and system), and the wall time. Then the
started orders serves FIRST_REQUESTS placements and reads, each on a new connection as a client
behind a proxy opens them, then LATER_REQUESTS more; reported are the slowest of the first ones and
the median of the later ones. Then the memory of its processes (/proc/<pid>/smaps_rollup): the PSS
summed over the arbiter and the workers, which counts each page shared between them once, and each
worker's private memory. One line per start, and medians per mode, go to stdout as Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from bench import children  # noqa: E402 (beside this script, as drills.py imports it)

from tests.live import Databases, LiveService, stack_start  # noqa: E402

FIRST_REQUESTS = 4
LATER_REQUESTS = 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LINES = [{"sku": "BOOK-42", "quantity": 1, "unit_price": 1250}]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return {"pss": values["Pss"], "private": values["Private_Clean"] + values["Private_Dirty"]}


def start_measured(service: LiveService, preload: bool, workers: int) -> dict:
    service.env["GUNICORN_PRELOAD"] = "true" if preload else "false"
    started = time.monotonic()
    service.spawn(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "platform" / "gunicorn.conf.py")],
        env=service.process_env(),
        log_path=service.workdir / f"{service.name}-{uuid.uuid4().hex[:6]}.log",
    )
    master = service.process.pid
    deadline = started + 120
    while True:
        if service.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} did not start:\n{service.log_text()}")
        booted = service.log_text().count("Booting worker")
        if booted >= workers and len(children(master)) >= workers:
            try:
                if requests.get(f"{service.url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
        time.sleep(0.02)
    ready_seconds = time.monotonic() - started
    pids = [master, *children(master)]
    return {"ready_s": ready_seconds, "cpu_s": sum(cpu_seconds(pid) for pid in pids), "pids": pids}


def timed(call) -> tuple[float, requests.Response]:
    """Milliseconds to the answer of `call()`, which must be a success, and the answer."""
    began = time.perf_counter()
    response = call()
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text}")
    return (time.perf_counter() - began) * 1000, response


def requests_measured(orders_url: str, token: str, run: str) -> dict:
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}

    def place(number: int) -> requests.Response:
        return requests.post(
            f"{orders_url}/api/orders/",
            json={"currency": "EUR", "lines": LINES, "payment_method": "pm_card_visa"},
            headers={**headers, "Idempotency-Key": f"{run}-{number}"},
            timeout=30,
        )

    placements, reads = [], []
    for number in range(FIRST_REQUESTS + LATER_REQUESTS):
        took, placed = timed(lambda number=number: place(number))
        placements.append(took)
        read = f"{orders_url}/api/orders/{placed.json()['id']}/"
        reads.append(timed(lambda read=read: requests.get(read, headers=headers, timeout=30))[0])
    return {
        "first_placement_ms": max(placements[:FIRST_REQUESTS]),
        "later_placement_ms": statistics.median(placements[FIRST_REQUESTS:]),
        "first_read_ms": max(reads[:FIRST_REQUESTS]),
        "later_read_ms": statistics.median(reads[FIRST_REQUESTS:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="starts of orders in each mode (default 4)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default: SQLite files)")
    arguments = parser.parse_args()
    workers = 2
    with tempfile.TemporaryDirectory(prefix="starts-") as folder:
        workdir = Path(folder)
        databases = Databases(workdir, arguments.database_url)
        stacks = stack_start(workdir, databases, ("auth", "orders", "payments"))  # 2 workers x 4 threads each
        stack = next(stacks)
        try:
            auth, orders = stack["auth"], stack["orders"]
            email, password = f"starts-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
            registered = requests.post(
                f"{auth.url}/api/auth/register/", json={"email": email, "password": password}, timeout=30
            )
            registered.raise_for_status()
            token = requests.post(
                f"{auth.url}/api/auth/token/",
                json={"grant_type": "password", "email": email, "password": password},
                timeout=30,
            ).json()["access_token"]
            results = []
            for round_number in range(arguments.rounds):
                for preload in (True, False) if round_number % 2 == 0 else (False, True):
                    orders.stop()
                    started = start_measured(orders, preload, workers)
                    served = requests_measured(orders.url, token, f"{uuid.uuid4().hex[:8]}")
                    pids = [pid for pid in started.pop("pids") if Path(f"/proc/{pid}").exists()]
                    memory = [memory_kib(pid) for pid in pids]
                    results.append(
                        {
                            "preload": preload,
                            **started,
                            **served,
                            "pss_mib": sum(entry["pss"] for entry in memory) / 1024,
                            "worker_private_mib": statistics.mean(entry["private"] for entry in memory[1:]) / 1024,
                        }
                    )
                    sys.stderr.write(f"{results[-1]}\n")
        finally:
            next(stacks, None)
            databases.drop_all()
    columns = (
        ("ready_s", "ready (s)", 2),
        ("cpu_s", "CPU to ready (s)", 2),
        ("first_placement_ms", f"slowest of first {FIRST_REQUESTS} placements (ms)", 0),
        ("later_placement_ms", "later placements, median (ms)", 0),
        ("first_read_ms", f"slowest of first {FIRST_REQUESTS} reads (ms)", 0),
        ("later_read_ms", "later reads, median (ms)", 1),
        ("pss_mib", "PSS, arbiter + workers (MiB)", 0),
        ("worker_private_mib", "private per worker (MiB)", 0),
    )
    lines = ["| mode | " + " | ".join(title for _, title, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for preload in (True, False):
        mine = [result for result in results if result["preload"] is preload]
        cells = [f"{statistics.median(result[key] for result in mine):.{digits}f}" for key, _, digits in columns]
        mode = f"{'preloaded' if preload else 'in each worker'} (median of {len(mine)})"
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    for result in results:
        cells = [f"{result[key]:.{digits}f}" for key, _, digits in columns]
        lines.append(f"| {'preloaded' if result['preload'] else 'in each worker'} | " + " | ".join(cells) + " |")
    lines.append(
        f"\n{os.cpu_count()} cores; {'PostgreSQL' if arguments.database_url else 'SQLite'}; "
        f"2 workers x 4 threads; started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
