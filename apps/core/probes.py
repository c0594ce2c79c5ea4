"""Liveness, readiness, version and metrics endpoints, identical in every service process."""

import os
import threading

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from apps.core import metrics as platform_metrics
from apps.core.problems import problem_response

_migrations_applied = False  # once true it stays true: a newer schema is the other color's business
_migrations_lock = threading.Lock()


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Checks no dependency, so a database outage never restarts pods."""
    return JsonResponse({"status": "ok"})


def _database_reachable() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return f"database unreachable: {error.__class__.__name__}"
    return None


def _migrations_pending() -> str | None:
    global _migrations_applied
    if _migrations_applied:
        return None
    with _migrations_lock:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            return f"{len(plan)} migration(s) not applied, first {plan[0][0].app_label}.{plan[0][0].name}"
        _migrations_applied = True
    return None


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: not draining, database reachable, every migration of this service applied."""
    checks = {}
    if os.path.exists(settings.DRAIN_FILE):
        checks["draining"] = "the process is draining before shutdown"
    database_error = _database_reachable()
    if database_error:
        checks["database"] = database_error
    else:
        try:
            pending = _migrations_pending()
        except DatabaseError as error:
            pending = f"migration state unreadable: {error.__class__.__name__}"
        if pending:
            checks["migrations"] = pending
    if checks:
        return problem_response(503, code="not_ready", detail="; ".join(checks.values()), checks=checks)
    return JsonResponse({"status": "ready"})


def version(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "service": settings.SERVICE,
            "version": settings.APP_VERSION,
            "git_sha": settings.GIT_SHA,
            "color": settings.DEPLOY_COLOR,
        }
    )


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: every gunicorn worker's counters and histograms (multiprocess mode),
    the build info, and the service's state read from its database (apps.core.metrics)."""
    return HttpResponse(platform_metrics.exposition(with_state=True), content_type=CONTENT_TYPE_LATEST)


VIEWS = {"/healthz": healthz, "/readyz": readyz, "/version": version, "/metrics": metrics}
