"""gunicorn configuration shared by every service: the image's command and `make up` both load it.

Every number here is overridable from the environment, so Kubernetes sizes a pod without a new image;
the reason for each default sits next to it.
"""

import gc
import os
import shutil
import sys
from pathlib import Path

# prometheus_client reads this when first imported (in the arbiter, which loads the application
# before forking), so it must be set here. One directory per server: two services on one machine
# must never share one.
_port = os.environ.get("PORT", "8000")
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    f"/tmp/prometheus-multiproc-{os.environ.get('SERVICE', 'all')}-{_port}",  # noqa: S108
)

wsgi_app = "apps.wsgi:application"
# LIVENESS_PORT (the image sets 8081): a second listener the workers answer liveness probes on in
# their event loop, without a request thread (apps/core/gunicorn_worker.py). Unset under `make up`,
# whose four servers share the machine's ports.
_host = os.environ.get("HOST", "0.0.0.0")
bind = [f"{_host}:{_port}"] + ([f"{_host}:{os.environ['LIVENESS_PORT']}"] if os.environ.get("LIVENESS_PORT") else [])

# --- concurrency ----------------------------------------------------------------------------------
# The services are I/O bound: a request mostly waits on PostgreSQL or on another service (orders waits
# up to seconds on payments). gthread lets a worker process serve other requests while one thread
# waits; sync workers would tie up a whole process per waiting request, and gevent would need every
# library (psycopg included) to be made cooperative. Threads share one GIL, so CPU parallelism comes
# from processes: two per container, sized for a pod of about one CPU, scaled out by the HPA rather
# than up. Each thread keeps its own database connection (CONN_MAX_AGE), so one container holds up
# to workers x threads = 8 connections: multiply by the replicas when sizing PostgreSQL.
# gthread, whose own refusals (oversized headers, malformed requests) are problem+json like the app's.
worker_class = "apps.core.gunicorn_worker.ThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# --- timeouts, consistent with apps/core/service_calls.py ---------------------------------------------
# One outbound call may wait 0.1 s for a bulkhead slot, then take 3 attempts (SERVICE_CALL_RETRIES=2)
# of at most 1 s to connect plus 5 s to read, with 0.4 s of backoff in between: 18.5 s. The slowest
# legitimate request, an order placed while orders has no service token yet, fetches a token (a POST
# without an idempotency key, so only failed connects are retried: at most 0.1 s + 3 x 1 s + 5 s +
# 0.4 s = 8.5 s) and then charges the payment (18.5 s): 27.0 s. Both timeouts below leave room above
# that, and callers of a service (ingress, load tests) must wait longer than this service's own retry
# budget, or their retries only add load.
#
# With gthread, `timeout` is not a request deadline: the worker's main loop reports every second
# whatever its threads do, so only a worker whose loop is stuck (a C call holding the GIL) is killed.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# After SIGTERM the workers stop accepting and get this long for in-flight requests; then SIGKILL.
# Kubernetes' terminationGracePeriodSeconds must exceed the preStop sleep plus this, and compose's
# stop_grace_period must exceed this, or the orchestrator kills the drain half way.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Idle keep-alive connections close after this. The rule: the server's idle timeout is LONGER than
# that of every proxy in front of it, so that the proxy is always the side that closes an idle
# connection. Were the server first, a proxy could send a request on the socket the server is just
# closing, and get a reset back; a POST is not retried, so the client sees a 502. The Gateway's Envoy
# keeps idle upstream connections 60 s (deploy/base/gateway/backendtrafficpolicy.yaml; Envoy's own
# default is an hour), AWS load balancers 60 s by default: 75 s is above both. A proxy with a longer
# default gets an idle timeout below this in its own configuration. The other services' connection
# pools check a pooled socket before reusing it. During shutdown gunicorn closes idle connections
# within 2 s, whatever this is, and the blue/green tool's drain before scaling a color down (120 s)
# outlasts it.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
# A kept-alive connection is closed after CONNECTION_MAX_REQUESTS answers (1000; read by the worker
# class, apps/core/gunicorn_worker.py), as nginx's keepalive_requests does: its client connects again
# and lands on the least busy worker, so a replaced worker or a new pod gets its share back.

# --- worker recycling -----------------------------------------------------------------------------
# A worker is replaced after about this many requests, bounding slow memory growth. The jitter (10%)
# spreads the restarts, so that workers started together do not all restart at the same moment.
# Measured (perf/README.md, "What each change bought"): with recycling off, orders' two workers served
# 163,577 token-verified reads in 160 s and held 85 MiB each from the first 25 s to the end, so there
# is no growth for a faster turnover to bound. A replaced worker costs its restart: loading in each
# worker, it re-imported Django and refetched the JWKS, and a process with one worker served nothing
# meanwhile (the third 1-worker round of three `make bench` runs held a request 2.7-3.2 s); forked
# from the preloaded arbiter (below), it refetches the keys and reconnects. At 20,000 that comes round every
# 35-45 s at the 450-600 requests/s a worker serves under load; at 100,000, every 3 minutes or more.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "100000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "10000"))

# --- loading: once, in the arbiter, before the fork ----------------------------------------------------
# The arbiter imports Django and the service, checks its configuration and does the work every
# worker's first requests would repeat (apps/wsgi.py, apps/core/warmup.py), then forks the workers.
# A starting pod pays for one import instead of one per worker (perf/README.md, "Starting a pod":
# what matters when a node starts many pods at once, as in a drain or a release), a worker recycled
# after max_requests or killed is a fork of the loaded arbiter, not a new import, and the workers
# share the pages the import wrote. What a process must not share is made after the fork, in each worker: no database
# connection is open when the arbiter forks (`pre_fork`), each worker installs its own tracer provider
# (`post_worker_init`), prometheus_client moves a forked worker to metrics files of its own pid at
# its first write, and the log writer thread is the forked process's own (apps/core/logging.py). A
# new image is a new pod: nothing is reloaded in place. GUNICORN_PRELOAD=false imports in each worker
# instead, as a check that a change works both ways, and for the benchmark's comparison.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").strip().lower() != "false"
if preload_app:
    # The preloaded application creates its metrics files as it is imported, before `on_starting`
    # runs, so the directory must exist by then (`on_starting` still empties it: files of a previous
    # run, and the arbiter's own, which hold no counts).
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- the filesystem: read-only root, writable /tmp ---------------------------------------------------
# Each worker's heartbeat file; unset means the system temporary directory, /tmp in the image.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None
# gunicorn's control socket (for `gunicornc`) would live under $HOME, which the read-only image cannot
# write and which the four local processes of `make up` would share. Workers are changed by deploying.
control_socket_disable = True

# --- logging: JSON lines on stdout --------------------------------------------------------------------
# No gunicorn access log. apps.core.middleware.RequestIdMiddleware already writes one JSON line per
# request with what gunicorn cannot know: the request id, service, deploy color and version. A gunicorn
# line would repeat each request without those fields, doubling log volume and every count made from
# logs. What it alone would add is covered elsewhere: requests gunicorn rejects before the app are
# logged as warnings by its error log, and probes and scrapes (which the app deliberately leaves out of
# the request log) show in the orchestrator's probe status and Prometheus' `up`.
accesslog = None
# gunicorn would still build each request's access log entry for a logger with no handler, because a
# logging configuration is given: this logger class says there is no access log.
logger_class = "apps.core.gunicorn_worker.Logger"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}

# X-Forwarded-* headers are trusted only from these addresses (the local proxy by default).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = f"{os.environ.get('SERVICE', 'all')}-service"


def pre_fork(server, worker):
    """Nothing the arbiter holds that two processes must not share crosses the fork: its database
    connections closed (none is opened while loading; this keeps it so), and the objects the
    preloaded import made moved out of the garbage collector's reach, so that a worker's collections
    do not write to, and so copy, the pages it shares with the arbiter and the other workers."""
    if "django.db" in sys.modules:
        from django.db import connections  # noqa: PLC0415 (loaded only when the application is)

        connections.close_all()
    gc.freeze()


def post_worker_init(worker):
    """Each worker its own tracer provider (apps.core.tracing): its spans name its process, and the
    span processor's thread is its own. Not in perf/bare, the benchmark's ceiling, which shares this
    file and has no tracing."""
    from django.apps import apps  # noqa: PLC0415 (in the worker, once the application is loaded)

    if apps.is_installed("apps.core"):
        from apps.core import tracing  # noqa: PLC0415

        tracing.configure("web")


def on_starting(server):
    """Empty the metrics directory: files of a previous run would be summed into this one's."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    drain_file = Path(os.environ.get("DRAIN_FILE", "/tmp/draining"))  # noqa: S108
    drain_file.unlink(missing_ok=True)  # left over from an interrupted shutdown: we are starting


def child_exit(server, worker):
    """Fold an exited worker's metrics files into the archives (apps/core/metrics_files.py): its
    counts stay in every sum, and the directory holds one set of files per live worker, not one per
    worker the pod ever had."""
    from apps.core.metrics_files import retire_worker  # noqa: PLC0415 (in the arbiter, after the fork)

    removed = retire_worker(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]), worker.pid)
    server.log.debug("folded %d metrics files of worker %s into the archives", removed, worker.pid)
