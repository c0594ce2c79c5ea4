"""apps.core.logging.StdoutHandler: lines below WARNING written together a moment later, a WARNING at
once after them, every line once and in the order it was logged, whatever the threads, forks and exits."""

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from apps.core.logging import StdoutHandler

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def logged():
    """A logger of its own, writing through a StdoutHandler (0.2 s interval) to a string."""
    stream = io.StringIO()
    handler = StdoutHandler(stream, interval=0.2)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.stdout-handler.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, handler, stream
    handler.close()


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def test_lines_below_warning_are_written_together_a_moment_later(logged):
    logger, _handler, stream = logged
    logger.info("one")
    logger.debug("two")
    assert stream.getvalue() == ""  # queued, not yet written
    wait_until(stream.getvalue)
    assert stream.getvalue() == "INFO one\nDEBUG two\n"


def test_a_warning_is_written_at_once_after_what_was_queued_before_it(logged):
    logger, _handler, stream = logged
    logger.info("before")
    logger.warning("the warning")
    assert stream.getvalue() == "INFO before\nWARNING the warning\n"
    logger.info("after")
    logger.error("the error")
    assert stream.getvalue().splitlines() == ["INFO before", "WARNING the warning", "INFO after", "ERROR the error"]


def test_flush_writes_what_is_queued(logged):
    logger, handler, stream = logged
    handler.interval = 60
    logger.info("queued")
    handler.flush()
    assert stream.getvalue() == "INFO queued\n"


def test_interval_zero_writes_each_line_as_it_is_logged(logged):
    logger, handler, stream = logged
    handler.interval = 0
    logger.info("at once")
    assert stream.getvalue() == "INFO at once\n"


def test_threads_logging_at_once_lose_no_line_and_keep_each_ones_order(logged):
    logger, handler, stream = logged
    handler.interval = 0.01

    def log(thread: int) -> None:
        for line in range(500):
            logger.info("%d %d", thread, line)

    threads = [threading.Thread(target=log, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    lines = [line.split() for line in stream.getvalue().splitlines()]
    assert len(lines) == 8 * 500
    for thread in range(8):
        assert [int(line) for _, who, line in lines if int(who) == thread] == list(range(500))


def test_a_forked_child_writes_its_own_lines_and_not_its_parents_queue_again(logged):
    logger, handler, _stream = logged
    read_end, write_end = os.pipe()
    handler.setStream(os.fdopen(write_end, "w"))
    handler.interval = 60  # the parent's line stays queued through the fork
    logger.info("parent, before the fork")
    pid = os.fork()
    if pid == 0:  # the child: its line, flushed as logging.shutdown would at exit, then gone
        logger.info("child")
        handler.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    handler.flush()
    handler.stream.close()
    with os.fdopen(read_end) as reader:
        assert reader.read().splitlines() == ["INFO child", "INFO parent, before the fork"]


class StreamThatBlocks:
    """A stream whose write holds a lock of its own until released, as a buffered file holds its
    buffer's lock while the pipe behind it is full. A lock like that is not reset in a forked child."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writing = threading.Event()
        self.release = threading.Event()
        self.text = ""

    def write(self, text: str) -> None:
        with self.lock:
            self.writing.set()
            self.release.wait(10)
            self.text += text

    def flush(self) -> None:
        pass


def test_a_fork_waits_for_a_write_under_way_so_the_child_does_not_inherit_the_stream_locked(logged):
    """gunicorn forks its workers from an arbiter that has loaded the application and logged, and
    whose writer thread may be writing at that moment: forked then, a worker would find the stream
    locked by a thread it does not have and block at its first line, for ever."""
    logger, handler, _stream = logged
    stream = StreamThatBlocks()
    handler.setStream(stream)
    handler.interval = 0.01
    logger.info("the parent's line, being written as it forks")
    assert stream.writing.wait(5)  # the writer thread is in write(), holding the stream's lock
    threading.Timer(0.3, stream.release.set).start()
    pid = os.fork()
    if pid == 0:
        logger.warning("the child's line")  # written at once, through the stream's lock
        os._exit(0)
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child blocked on the stream's lock")
        time.sleep(0.01)
    assert stream.text == "INFO the parent's line, being written as it forks\n"


def test_a_process_that_exits_writes_every_queued_line_on_its_way_out():
    # The platform's own logging configuration, a writer that would not write for a minute, and a
    # normal exit: logging.shutdown flushes the handler.
    script = (
        "import django, logging\n"
        "django.setup()\n"
        "for number in range(200):\n"
        "    logging.getLogger('apps.test').info('line %d', number)\n"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "apps.settings",
        "SERVICE": "orders",
        "LOG_WRITE_INTERVAL_SECONDS": "60",
    }
    finished = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines if line["logger"] == "apps.test"] == [f"line {n}" for n in range(200)]
