"""gunicorn configuration shared by every service, in the image and in `make up`.

The services are I/O bound (database, calls to each other), so each worker process runs threads
(gthread): a request waiting on payments does not hold a whole process. Everything is overridable
from the environment so that Kubernetes can size a pod without a new image.
"""

import os
import shutil
from pathlib import Path

# prometheus_client reads this when first imported (in the workers, after the fork), so it must be
# set here. One directory per server: two services on one machine must never share one.
_port = os.environ.get("PORT", "8000")
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    f"/tmp/prometheus-multiproc-{os.environ.get('SERVICE', 'all')}-{_port}",  # noqa: S108
)

wsgi_app = "apps.wsgi:application"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_port}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A worker silent for this long is killed. Above the slowest legitimate request: a service call
# spends at most (connect 1 s + read 5 s) x 3 attempts plus backoff.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# After SIGTERM, in-flight requests get this long to finish. The pod's grace period covers the
# preStop sleep plus this.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Shorter than any load balancer's idle timeout in front of us, so the LB never reuses a
# connection we are closing.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then (bounded memory growth), jittered so they do not all restart at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# The heartbeat file lives in /tmp: the container's root filesystem is read-only.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None
# Request lines are logged as JSON by the application (with the request id), not by gunicorn.
accesslog = None
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
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = f"{os.environ.get('SERVICE', 'all')}-service"


def on_starting(server):
    """Empty the metrics directory: files of a previous run would be summed into this one's."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    drain_file = Path(os.environ.get("DRAIN_FILE", "/tmp/draining"))  # noqa: S108
    drain_file.unlink(missing_ok=True)  # left over from an interrupted shutdown: we are starting


def child_exit(server, worker):
    """Tell prometheus_client a worker died, so its live gauges stop counting."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)
