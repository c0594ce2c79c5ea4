"""gunicorn's threaded worker: the requests gunicorn itself refuses answered as problem+json, and a
liveness answer that needs no free request thread.

Some requests never reach Django: headers over gunicorn's limits (431), a request line over its
limit (414), a malformed request line or header (400). gunicorn answers those with an HTML page of
its own, written by `gunicorn.util.write_error`, which has no hook; this worker replaces that one
function in its own process before serving, so those answers keep the platform's error contract
(RFC 9457 problem+json with a request id) like every other.

Liveness. An HTTP liveness probe answered by Django waits for one of the worker's request threads,
and when every thread waits on a slow dependency (orders placing orders while payments hangs) the
probe times out and the kubelet restarts a pod that is busy, not broken. With LIVENESS_PORT set,
the worker also listens there and answers in its own event loop, without a thread: 200 while the
request threads make progress, busy or not, and 503 only when requests are in progress and none has
finished for LIVENESS_STALL_SECONDS, longer than any legitimate request takes
(platform/gunicorn.conf.py): threads that are stuck, which only a restart clears. A worker whose
event loop itself is stuck is gunicorn's to replace (its heartbeat `timeout`).

gunicorn's logger, without its access log. gunicorn counts its access log as on whenever a logging
configuration is given (`logconfig_dict`, which the platform sets to make its error log JSON), and
then builds, for every request, a dict of every request header, response header and environ entry,
and a log record for a logger with no handler. The platform's access log line is
apps.core.middleware.RequestIdMiddleware's; `Logger` says gunicorn has none.

Kept-alive connections moved now and then. A client that keeps its connections alive (a proxy, another
service's pool, a load test) stays with the worker, and the pod, that accepted each one. When a worker
is replaced (`max_requests`), its connections reconnect while the new worker is still importing Django,
so they all land on the others, and nothing moves them back (in one bench run, perf/README.md, the bare
view served 2,136 requests a second in the phase in which both its workers were replaced, and
3,705-3,879 in the others). A new pod after a scale-up gets no share of existing connections either.
Like nginx's `keepalive_requests` (also 1000 by default), the answer to a connection's
CONNECTION_MAX_REQUESTS-th request says `Connection: close`; the client connects again, and the new
connection goes to whichever worker (or pod) is least busy (`ThreadWorker.accept`). 0 keeps a
connection for as many requests as it carries.
"""

import errno
import json
import os
import selectors
import time
from http import HTTPStatus

from gunicorn import glogging, util
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

from apps.core import context
from apps.core.problem_codes import status_code


def problem_error_write(sock, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn sends for a request it refused, as problem+json. `mesg` is not sent: it can
    repeat the refused request line or header, which is the client's input."""
    request_id = context.request_id_new()
    code = status_code(status_int)
    try:
        title = HTTPStatus(status_int).phrase
    except ValueError:
        title = reason
    body = json.dumps(
        {
            "type": f"urn:problem-type:{code}",
            "title": title,
            "status": status_int,
            "detail": f"{title}: the request was refused before it reached the service.",
            "code": code,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {title}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


PROBE_READ_SECONDS = 5  # a probe connection that sends nothing for this long is closed
# How long a worker that holds a connection per thread leaves a new connection to the others.
ACCEPT_YIELD_SECONDS = 0.002


class Logger(glogging.Logger):
    """gunicorn's logger with its access log off, whatever logging configuration is given."""

    def access(self, resp, req, environ, request_time) -> None:
        """No access log line, and none of the work of making one."""


class ThreadWorker(GunicornThreadWorker):
    """gthread (see platform/gunicorn.conf.py for why threads), with problem+json refusals, a
    liveness listener served by the event loop, and new connections shared between the workers."""

    def init_process(self):
        util.write_error = problem_error_write
        self.liveness_port = int(os.environ.get("LIVENESS_PORT") or 0)
        self.stall_seconds = float(os.environ.get("LIVENESS_STALL_SECONDS", "60"))
        self.in_flight = 0  # requests handed to the threads and not finished
        self.last_progress = time.monotonic()  # when one last finished (or the first began)
        self.liveness_sockets = []
        self.probes = {}  # probe connection -> when it is closed unanswered
        self.connection_max_requests = int(os.environ.get("CONNECTION_MAX_REQUESTS", "1000"))
        super().init_process()

    # --- sharing new connections between the workers -------------------------------------------------
    def accept(self, listener):
        """A worker that already holds a connection per thread lets the other workers take a new one.

        Every worker waits on the same listening socket, each new connection wakes them all, and the
        first to call accept() gets it. Measured on plain gthread: a burst of 33 connections (k6's
        virtual users, or a proxy opening its pool) landed 32 or 33 on one worker, whose one GIL then
        served the pod while the other idled, and the order read ran at about half its rate
        (perf/README.md). Here a worker holding `threads` connections or more first waits
        ACCEPT_YIELD_SECONDS, during which a less busy worker, woken by the same connection, takes
        it; when none does (all are as busy), this one accepts it 2 ms late. Kept-alive clients
        connect rarely, so the wait is rare; nginx's workers back off the same way
        (`ngx_accept_disabled`).
        """
        if self.nr_conns >= self.cfg.threads:
            time.sleep(ACCEPT_YIELD_SECONDS)
        super().accept(listener)

    # --- moving kept-alive connections now and then ---------------------------------------------------
    def handle_request(self, req, conn):
        """The answer to the connection's CONNECTION_MAX_REQUESTS-th request closes it (in a request thread)."""
        conn.requests_served = getattr(conn, "requests_served", 0) + 1
        if self.connection_max_requests and conn.requests_served >= self.connection_max_requests:
            req.must_close = True  # gunicorn answers `Connection: close` and closes after the answer
        return super().handle_request(req, conn)

    # --- progress of the request threads -----------------------------------------------------------
    def enqueue_req(self, conn):
        if self.in_flight == 0:
            self.last_progress = time.monotonic()  # idle time is no stall
        self.in_flight += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.in_flight -= 1
        self.last_progress = time.monotonic()
        super().finish_request(conn, fs)

    def liveness(self) -> tuple[int, dict]:
        stalled = time.monotonic() - self.last_progress
        if self.in_flight and stalled > self.stall_seconds:
            return 503, {"status": "stalled", "in_flight": self.in_flight, "seconds_without_progress": round(stalled)}
        return 200, {"status": "ok", "in_flight": self.in_flight}

    # --- the liveness listener, outside the thread pool --------------------------------------------
    def run(self):
        if self.liveness_port:
            self.liveness_sockets = [sock for sock in self.sockets if sock.getsockname()[1] == self.liveness_port]
            # Not among the sockets gthread accepts requests on, nor paused with them at capacity.
            self.sockets = [sock for sock in self.sockets if sock not in self.liveness_sockets]
            for sock in self.liveness_sockets:
                sock.setblocking(False)
                self.poller.register(sock, selectors.EVENT_READ, self.accept_probe)
        try:
            super().run()
        finally:
            for sock in [*self.liveness_sockets, *self.probes]:
                sock.close()

    def accept_probe(self, listener):
        try:
            sock, _ = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        sock.setblocking(False)
        self.probes[sock] = time.monotonic() + PROBE_READ_SECONDS
        self.poller.register(sock, selectors.EVENT_READ, self.answer_probe)

    def answer_probe(self, sock):
        """Whatever the probe asked (one small GET), answer with the liveness verdict and close."""
        self.poller.unregister(sock)
        self.probes.pop(sock, None)
        status, verdict = self.liveness()
        body = json.dumps(verdict).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode("latin-1")
        try:
            sock.recv(8192)  # read before closing: unread input would turn the close into a reset
            sock.send(head + body)  # a few hundred bytes: the socket's buffer takes them at once
        except OSError:
            pass  # the prober went away; nothing to answer
        finally:
            sock.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for sock in [sock for sock, deadline in self.probes.items() if deadline < now]:
            self.poller.unregister(sock)
            del self.probes[sock]
            sock.close()
