"""Prometheus' multiprocess files, kept to one set per live worker plus one archive per metric type.

In multiprocess mode every gunicorn worker writes its metrics to files of its own
(`counter_<pid>.db`, `histogram_<pid>.db`, ...) in PROMETHEUS_MULTIPROC_DIR, and a scrape sums every
file it finds there. A worker that exits (recycled after max_requests, or killed) leaves its files
behind: its counts must stay in the sums, or every counter would drop and look like a reset. Kept
as they are, the files pile up with every recycled worker, and each scrape reads all of them, so
/metrics gets slower and /tmp fuller the longer a pod lives.

`retire_worker` (gunicorn's child_exit hook, in the arbiter) folds a dead worker's files into one
archive file per type, `<type>_archive.db`, and deletes them: counters, histograms and summaries are
added, gauges merged by their mode (min, max, sum, most recent), and per-process gauges (modes
`all` and the live ones) dropped with their process. A scrape (`collect_locked`) and a merge exclude
each other through a lock file, so no scrape ever sees a dead worker's counts twice or not at all.
"""

import fcntl
import glob
import operator
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

LOCK_FILE = ".merge.lock"  # not *.db: the collector never reads it
ARCHIVE = "archive"

# How a gauge mode combines the archived value with a dead worker's; modes not here are per process.
GAUGE_MERGES = {"min": min, "max": max, "sum": operator.add}


@contextmanager
def directory_lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    with open(directory / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _archive_name(dead: Path, pid: int) -> str | None:
    """The archive file a dead worker's file folds into, or None when it is dropped."""
    kind, _, rest = dead.name.removesuffix(".db").rpartition(f"_{pid}")[0].partition("_")
    if kind in {"counter", "histogram", "summary"}:
        return f"{kind}_{ARCHIVE}.db"
    if kind == "gauge" and (rest in GAUGE_MERGES or rest == "mostrecent"):
        return f"gauge_{rest}_{ARCHIVE}.db"
    return None  # per-process gauges: mode all, and the live modes (what mark_process_dead removes)


def _fold(dead: Path, archive: Path) -> None:
    mode = archive.name.split("_")[1] if archive.name.startswith("gauge_") else None
    archived = MmapedDict(str(archive))
    try:
        existing = {key: (value, timestamp) for key, value, timestamp in archived.read_all_values()}
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
            if key not in existing:
                merged = (value, timestamp)
            elif mode == "mostrecent":
                merged = max(existing[key], (value, timestamp), key=lambda value_and_time: value_and_time[1])
            elif mode in GAUGE_MERGES:
                merged = (GAUGE_MERGES[mode](existing[key][0], value), max(existing[key][1], timestamp))
            else:  # counters, histograms' buckets, sums and counts, summaries: the dead worker's counts add
                merged = (existing[key][0] + value, max(existing[key][1], timestamp))
            archived.write_value(key, *merged)
    finally:
        archived.close()


def retire_worker(directory: Path, pid: int) -> int:
    """Fold the files of the exited worker `pid` into the archives; returns how many it removed."""
    with directory_lock(directory, exclusive=True):
        removed = 0
        for name in glob.glob(str(directory / f"*_{pid}.db")):
            dead = Path(name)
            archive = _archive_name(dead, pid)
            if archive is not None:
                _fold(dead, directory / archive)
            dead.unlink()
            removed += 1
        return removed


def collect_locked(directory: Path, collect):
    """Run `collect()` (a scrape of the directory) while no merge is under way."""
    with directory_lock(directory, exclusive=False):
        return collect()


def multiproc_directory() -> Path | None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(directory) if directory else None
