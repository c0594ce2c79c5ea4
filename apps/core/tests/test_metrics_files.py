"""apps.core.metrics_files: an exited worker's multiprocess files fold into archives and every sum
a scrape reports stays as it was. Real prometheus_client files, read by its own collector."""

import threading
import time

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core.metrics_files import collect_locked, directory_lock, retire_worker


def write(directory, name, values):
    """One worker's file: {(metric, sample name, ((label, value), ...)): value or (value, timestamp)}."""
    mmap = MmapedDict(str(directory / name))
    for (metric, sample, labels), written in values.items():
        value, timestamp = written if isinstance(written, tuple) else (written, 0.0)
        names, label_values = [label for label, _ in labels], [label_value for _, label_value in labels]
        mmap.write_value(mmap_key(metric, sample, names, label_values, "help"), value, timestamp)
    mmap.close()


def scrape(directory) -> dict:
    samples = {}
    for metric in MultiProcessCollector(None, path=str(directory)).collect():
        for sample in metric.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def workers(directory, pids):
    for pid, scale in zip(pids, (1, 3, 5), strict=False):
        write(
            directory,
            f"counter_{pid}.db",
            {
                ("requests", "requests_total", (("view", "a"),)): 2.0 * scale,
                ("requests", "requests_total", (("view", "b"),)): 1.0,
            },
        )
        write(
            directory,
            f"histogram_{pid}.db",
            {
                ("latency", "latency_bucket", (("le", "0.1"),)): 1.0 * scale,
                ("latency", "latency_bucket", (("le", "+Inf"),)): 1.0,
                ("latency", "latency_sum", ()): 0.25 * scale,
            },
        )
        write(directory, f"gauge_max_{pid}.db", {("peak", "peak", ()): 10.0 * scale})
        write(directory, f"gauge_min_{pid}.db", {("low", "low", ()): 10.0 * scale})
        write(directory, f"gauge_mostrecent_{pid}.db", {("seen", "seen", ()): (float(pid), float(pid))})
        write(directory, f"gauge_all_{pid}.db", {("migrations", "migrations", ()): 7.0})
        write(directory, f"gauge_livesum_{pid}.db", {("in_flight", "in_flight", ()): 1.0})


def test_a_dead_workers_counts_stay_in_every_sum_and_its_files_go(tmp_path):
    workers(tmp_path, [101, 202, 303])
    before = scrape(tmp_path)

    assert retire_worker(tmp_path, 101) == 7
    assert retire_worker(tmp_path, 303) == 7
    after = scrape(tmp_path)

    # Counters, histograms (buckets, count, sum): exactly as before, from the archive and the live worker.
    for name in ("requests_total", "latency_bucket", "latency_count", "latency_sum"):
        assert {key: value for key, value in after.items() if key[0] == name} == {
            key: value for key, value in before.items() if key[0] == name
        }
    assert after[("requests_total", (("view", "a"),))] == 2 + 6 + 10
    # Gauges merged by their mode: the maximum and minimum of all three, the most recent value.
    assert after[("peak", ())] == before[("peak", ())] == 50
    assert after[("low", ())] == before[("low", ())] == 10
    assert after[("seen", ())] == before[("seen", ())] == 303
    # Per-process gauges leave with their process.
    assert {key for key in after if key[0] == "migrations"} == {("migrations", (("pid", "202"),))}
    assert after[("in_flight", ())] == 1
    # Files: the live worker's and one archive per merged type.
    assert sorted(path.name for path in tmp_path.glob("*.db")) == sorted(
        [f"{kind}_202.db" for kind in ("counter", "histogram", "gauge_max", "gauge_min", "gauge_mostrecent")]
        + ["gauge_all_202.db", "gauge_livesum_202.db"]
        + [f"{kind}_archive.db" for kind in ("counter", "histogram", "gauge_max", "gauge_min", "gauge_mostrecent")]
    )


def test_retiring_a_worker_without_files_changes_nothing(tmp_path):
    workers(tmp_path, [404])
    before = scrape(tmp_path)
    assert retire_worker(tmp_path, 4040) == 0
    assert retire_worker(tmp_path, 40) == 0
    assert scrape(tmp_path) == before


def test_a_scrape_waits_for_a_merge_under_way(tmp_path):
    workers(tmp_path, [505])
    order = []
    merging = threading.Event()

    def merge():
        with directory_lock(tmp_path, exclusive=True):
            merging.set()
            time.sleep(0.3)
            order.append("merge done")

    thread = threading.Thread(target=merge)
    thread.start()
    merging.wait(5)
    collect_locked(tmp_path, lambda: order.append("scraped"))
    thread.join()
    assert order == ["merge done", "scraped"]
