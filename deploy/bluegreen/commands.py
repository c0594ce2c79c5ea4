"""The blue/green operations: status, deploy, promote, rollback and scale-down of one service.

Each operation reads the cluster, asks `decisions` what to do, and makes its changes under the
service's lock (a coordination.k8s.io Lease), so two operations on one service never interleave. The
traffic switch is one compare-and-swap patch of the stable Service: its selector, the last switch and
the history change together, or not at all.
"""

import json
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from deploy.bluegreen import gate
from deploy.bluegreen.cluster import JSON_PATCH, Cluster, ConflictError, NotFoundError, format_micro_time
from deploy.bluegreen.decisions import (
    APP_CONTAINER,
    CHANGE_ANNOTATION,
    CONFIG_ANNOTATION,
    FOLLOWERS,
    FOLLOWERS_ANNOTATION,
    GATE_TEMPLATE,
    HISTORY_ANNOTATION,
    LAST_SWITCH_ANNOTATION,
    SERVICES,
    VERSION_ANNOTATION,
    VERSION_LABEL,
    BlueGreenError,
    ColorState,
    ComparisonThresholds,
    GateOutcome,
    GateResult,
    GateThresholds,
    LockState,
    Plan,
    RolledBackError,
    TrafficMovedError,
    TrafficSample,
    WatchThresholds,
    autoscaler_name,
    capacity_shortfall,
    color_state,
    comparison_verdict,
    deployment_name,
    drain_wait_seconds,
    endpoints_only_on,
    gate_job,
    gate_result_line,
    history_with,
    lease_name,
    lock_held_error,
    lock_state,
    migration_job_name,
    other_color,
    parse_time,
    preview_service_name,
    promotion_plan,
    promotion_refusal,
    rollback_plan,
    scale_down_refusal,
    selected_color,
    switch_record,
    version_label,
    watch_verdict,
)
from deploy.bluegreen.releases import (
    Release,
    configuration_id,
    follower_template,
    followers_of,
    recorded_followers,
    release_from_manifests,
)

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def change_stamp() -> dict:
    """The annotation that marks a write of a tool-owned field as the tool's (see CHANGE_ANNOTATION)."""
    return {CHANGE_ANNOTATION: uuid.uuid4().hex}


def _write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Context:
    """Who acts on which cluster, and the clock: tests replace the clock and sleep to run instantly."""

    cluster: Cluster
    actor: str
    say: Callable[[str], None] = _write_stdout
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 2.0
    endpoints_poll_seconds: float = 0.25
    endpoints_timeout_seconds: float = 30.0
    # After the EndpointSlices settle, kube-proxy still has to program every node (seen on the local
    # cluster: up to 1.1 s); a color taken out of traffic is scaled down only after this.
    dataplane_settle_seconds: float = 5.0


@dataclass(frozen=True)
class Switched:
    """How long a switch took: the selector patch, and until the endpoints listed only the new color."""

    patch_seconds: float
    traffic_seconds: float | None  # None: the endpoints did not settle within the timeout


# --- the lock ----------------------------------------------------------------------------------------


@contextmanager
def service_lock(ctx: Context, *, service: str, purpose: str, duration_seconds: int) -> Iterator[str]:
    """Hold the service's Lease for the duration of one operation; refuse while another holds it."""
    _check_service(service)
    name = lease_name(service=service)
    holder = f"{ctx.actor} {purpose} {socket.gethostname()} {uuid.uuid4().hex[:8]}"
    _lock_acquire(ctx, service=service, name=name, holder=holder, duration_seconds=duration_seconds)
    try:
        yield holder
    finally:
        _lock_release(ctx, name=name, holder=holder)


def _lock_acquire(ctx: Context, *, service: str, name: str, holder: str, duration_seconds: int) -> None:
    now = ctx.now()
    try:
        lease = ctx.cluster.read_lease(name=name)
    except NotFoundError:
        try:
            ctx.cluster.create_lease(name=name, holder=holder, duration_seconds=duration_seconds, now=now)
        except ConflictError:
            lease = ctx.cluster.read_lease(name=name)  # created by someone else a moment ago
            raise lock_held_error(service=service, lease_spec=lease.get("spec", {})) from None
        return
    spec = lease.get("spec", {})
    state = lock_state(lease_spec=spec, now=now, me=holder)
    if state is LockState.HELD:
        raise lock_held_error(service=service, lease_spec=spec)
    if state is LockState.EXPIRED:
        ctx.say(f"taking over the expired lock of {spec.get('holderIdentity')}")
    body = {
        "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": format_micro_time(now),
            "renewTime": format_micro_time(now),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
        },
    }
    try:
        ctx.cluster.patch_lease(name=name, body=body)
    except ConflictError:
        lease = ctx.cluster.read_lease(name=name)
        raise lock_held_error(service=service, lease_spec=lease.get("spec", {})) from None


def _lock_release(ctx: Context, *, name: str, holder: str) -> None:
    try:
        lease = ctx.cluster.read_lease(name=name)
        if lease.get("spec", {}).get("holderIdentity") != holder:
            return
        ctx.cluster.patch_lease(
            name=name,
            body={
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": None},
            },
        )
    except (ConflictError, NotFoundError, ApiException):
        # Never hide the operation's own outcome behind a failed release.
        ctx.say(f"warning: could not release lock {name}; it expires by itself")


# --- reading the state of a service -----------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    service: str
    stable: dict
    live: str
    idle: str
    live_state: ColorState
    idle_state: ColorState
    idle_deployment: dict = field(default_factory=dict)

    @property
    def history(self) -> list[dict]:
        annotations = self.stable.get("metadata", {}).get("annotations") or {}
        return json.loads(annotations.get(HISTORY_ANNOTATION, "[]"))

    @property
    def last_switch(self) -> dict | None:
        annotations = self.stable.get("metadata", {}).get("annotations") or {}
        raw = annotations.get(LAST_SWITCH_ANNOTATION)
        return json.loads(raw) if raw else None


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise BlueGreenError(f"{service!r} is not a service of the platform", next_step=f"use one of {SERVICES}")


def read_state(ctx: Context, *, service: str) -> ServiceState:
    _check_service(service)
    try:
        stable = ctx.cluster.read_service(name=service)
        live = selected_color(service_object=stable, service=service)
        idle = other_color(live)
        live_deployment = ctx.cluster.read_deployment(name=deployment_name(service=service, color=live))
        idle_deployment = ctx.cluster.read_deployment(name=deployment_name(service=service, color=idle))
    except NotFoundError as missing:
        raise BlueGreenError(
            f"{missing} does not exist in namespace {ctx.cluster.namespace}",
            next_step="apply the manifests first: kubectl apply --server-side -k deploy/overlays/<env>",
        ) from None
    return ServiceState(
        service=service,
        stable=stable,
        live=live,
        idle=idle,
        live_state=color_state(deployment=live_deployment, color=live),
        idle_state=color_state(deployment=idle_deployment, color=idle),
        idle_deployment=idle_deployment,
    )


def status(ctx: Context, *, service: str) -> ServiceState:
    state = read_state(ctx, service=service)
    ctx.say(f"{service}: live color {state.live}")
    for color_state_ in (state.live_state, state.idle_state):
        role = "live" if color_state_.color == state.live else "idle"
        ready = "ready" if color_state_.fully_available else "not ready"
        ctx.say(f"  {role} {color_state_.describe()}, {ready}")
    try:
        autoscaler = ctx.cluster.read_autoscaler(name=autoscaler_name(service=service))
        spec = autoscaler.get("spec", {})
        ctx.say(
            f"  autoscaler: {spec.get('scaleTargetRef', {}).get('name')}, "
            f"{spec.get('minReplicas')} to {spec.get('maxReplicas')} pods"
        )
    except NotFoundError:
        ctx.say("  autoscaler: none")
    try:
        lease = ctx.cluster.read_lease(name=lease_name(service=service))
        holder = lease.get("spec", {}).get("holderIdentity")
    except NotFoundError:
        holder = None
    ctx.say(f"  lock: {'held by ' + holder if holder else 'free'}")
    history = state.history
    if not history:
        ctx.say("  no switches recorded")
    for record in history:
        ctx.say(
            f"  {record['when']} {record['action']} {record['from']} -> {record['to']} "
            f"version {record['version']} by {record['who']}"
        )
    return state


# --- deploy ------------------------------------------------------------------------------------------


def migration_job_manifest(*, service: str, image: str, deployment: dict, deadline_seconds: int) -> dict:
    """A Job that runs `manage.py migrate` with `image` and exactly the configuration of `deployment`."""
    pod_spec = json.loads(json.dumps(deployment["spec"]["template"]["spec"]))
    app = next(c for c in pod_spec["containers"] if c["name"] == APP_CONTAINER)
    container = {
        key: value
        for key, value in app.items()
        if key not in {"ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"}
    }
    container.update(name="migrate", image=image, command=["python", "manage.py", "migrate", "--no-input"])
    # As the first apply's Jobs: a database that is slow to answer waits this step, not fails it.
    wait = {**container, "name": "wait-for-database", "command": ["python", "manage.py", "database_wait"]}
    pod_spec.pop("topologySpreadConstraints", None)
    pod_spec.update(initContainers=[wait], containers=[container], restartPolicy="Never")
    labels = {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/component": "migrate",
        "app.kubernetes.io/part-of": "platform",
        "app.kubernetes.io/managed-by": "bluegreen",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": migration_job_name(service=service, image=image),
            "labels": labels,
            "annotations": {VERSION_ANNOTATION: image},
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _job_outcome(job: dict) -> str:
    status_ = job.get("status", {})
    if int(status_.get("succeeded") or 0) >= 1:
        return "succeeded"
    for condition in status_.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return "failed"
    return "running"


def run_migration(ctx: Context, *, service: str, image: str, deployment: dict, timeout_seconds: int) -> None:
    name = migration_job_name(service=service, image=image)
    logs = f"kubectl -n {ctx.cluster.namespace} logs job/{name}"
    try:
        job = ctx.cluster.read_job(name=name)
    except NotFoundError:
        manifest = migration_job_manifest(
            service=service, image=image, deployment=deployment, deadline_seconds=timeout_seconds
        )
        job = ctx.cluster.create_job(body=manifest)
        ctx.say(f"migration Job {name} started")
    deadline = ctx.monotonic() + timeout_seconds
    while True:
        outcome = _job_outcome(job)
        if outcome == "succeeded":
            ctx.say(f"migration Job {name} succeeded")
            return
        if outcome == "failed":
            raise BlueGreenError(
                f"migration Job {name} failed; the idle color was not touched",
                next_step=f"read {logs}; fix the migration, delete the Job "
                f"(kubectl -n {ctx.cluster.namespace} delete job {name}) and deploy again",
            )
        if ctx.monotonic() >= deadline:
            raise BlueGreenError(
                f"migration Job {name} did not finish within {timeout_seconds} s; the idle color was not touched",
                next_step=f"read {logs} and kubectl -n {ctx.cluster.namespace} describe job {name}; "
                "deploy again once it has finished (a finished Job is reused)",
            )
        ctx.sleep(ctx.poll_seconds)
        job = ctx.cluster.read_job(name=name)


def _progress_deadline_exceeded(deployment: dict) -> bool:
    return any(
        condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded"
        for condition in deployment.get("status", {}).get("conditions") or []
    )


def wait_for_rollout(ctx: Context, *, service: str, color: str, image: str, live: str, timeout_seconds: int) -> None:
    name = deployment_name(service=service, color=color)
    deadline = ctx.monotonic() + timeout_seconds
    next_step = (
        f"kubectl -n {ctx.cluster.namespace} describe deployment/{name} and its pods' events and logs; "
        f"{live} still serves every request. Fix the image and deploy again, or free the idle color with "
        f"python -m deploy.bluegreen scale-down {service}"
    )
    while True:
        deployment = ctx.cluster.read_deployment(name=name)
        state = color_state(deployment=deployment, color=color)
        if state.image == image and state.fully_available:
            ctx.say(f"{service} {state.describe()}")
            return
        if _progress_deadline_exceeded(deployment):
            raise BlueGreenError(f"{service} {color} stopped progressing ({state.describe()})", next_step=next_step)
        if ctx.monotonic() >= deadline:
            raise BlueGreenError(
                f"{service} {color} was not available within {timeout_seconds} s ({state.describe()})",
                next_step=next_step,
            )
        ctx.sleep(ctx.poll_seconds)


CONFLICT_ATTEMPTS = 5


def _on_conflict_retried(change: Callable[[], None]) -> None:
    """`change()` reads an object and patches it with the resourceVersion it read; a conflict means
    another writer came in between (the HPA controller writes an autoscaler's status every sync, so
    right after a promote it often does), and the change is made again on a fresh read. The service's
    Lease keeps other operators out, so what changed in between is never the field being set."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            change()
            return
        except ConflictError:
            if attempt == CONFLICT_ATTEMPTS:
                raise


def _move_autoscaler(ctx: Context, *, service: str, color: str) -> None:
    """Put the service's autoscaler on `color`, the live one. It carries on from that color's size
    (the live color's, given at deploy or kept since the last promote); the color it leaves keeps
    its size, as the way back, until scale-down."""
    name = autoscaler_name(service=service)
    target = deployment_name(service=service, color=color)

    def change() -> None:
        autoscaler = ctx.cluster.read_autoscaler(name=name)
        if autoscaler.get("spec", {}).get("scaleTargetRef", {}).get("name") == target:
            return
        ctx.cluster.patch_autoscaler(
            name=name,
            body={
                "metadata": {
                    "resourceVersion": autoscaler["metadata"]["resourceVersion"],
                    "annotations": change_stamp(),
                },
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
            },
        )
        ctx.say(f"HorizontalPodAutoscaler {name} now scales {target}")

    _on_conflict_retried(change)


def _point_preview(ctx: Context, *, service: str, color: str) -> None:
    name = preview_service_name(service=service)

    def change() -> None:
        preview = ctx.cluster.read_service(name=name)
        if (preview.get("spec", {}).get("selector") or {}).get("color") == color:
            return
        ctx.cluster.patch_service(
            name=name,
            body={
                "metadata": {"resourceVersion": preview["metadata"]["resourceVersion"], "annotations": change_stamp()},
                "spec": {"selector": {"color": color}},
            },
        )
        ctx.say(f"Service {name} now selects {color}")

    _on_conflict_retried(change)


def smoke_test(ctx: Context, *, service: str, color: str, attempts: int = 5) -> dict:
    """GET /readyz and /version of the idle color through its preview Service; returns /version's answer."""
    name = preview_service_name(service=service)
    problem = ""
    for attempt in range(attempts):
        if attempt:
            ctx.sleep(ctx.poll_seconds)  # endpoints take a moment to follow new pods
        ready_status, ready_body = ctx.cluster.proxy_get(service=name, port="http", path="/readyz")
        if ready_status != 200:
            problem = f"GET /readyz through {name} answered {ready_status}: {ready_body[:200]}"
            continue
        version_status, version_body = ctx.cluster.proxy_get(service=name, port="http", path="/version")
        try:
            version = json.loads(version_body) if version_status == 200 else {}
        except ValueError:
            version = {}
        if version.get("service") == service and version.get("color") == color:
            ctx.say(f"smoke test passed through {name}: {version}")
            return version
        problem = f"GET /version through {name} answered {version_status}: {version_body[:200]}"
    raise BlueGreenError(
        f"smoke test of {service} {color} failed: {problem}",
        next_step=f"look at the pods (kubectl -n {ctx.cluster.namespace} get pods -l "
        f"app.kubernetes.io/name={service},color={color}) and their logs; nothing was switched",
    )


def _config_maps_ensure(ctx: Context, *, release: Release) -> None:
    """The ConfigMaps the release reads, made when missing. Their names carry a hash of their content
    (platform-config-<hash>), so one that exists already holds exactly this content."""
    for config_map in release.config_maps:
        name = config_map["metadata"]["name"]
        try:
            ctx.cluster.read_config_map(name=name)
        except NotFoundError:
            body = {key: value for key, value in config_map.items() if key != "status"}
            body["metadata"] = {**body["metadata"], "namespace": ctx.cluster.namespace}
            try:
                ctx.cluster.create_config_map(body=body)
                ctx.say(f"ConfigMap {name} created")
            except ConflictError:
                pass  # made in between, by an apply or another deploy: the same content


def _release_patch(deployment: dict, *, release: Release, replicas: int) -> list[dict]:
    """One JSON Patch that puts the release on a color: its pod template as the manifests make it
    (replaced whole, so that what the manifests dropped goes too), its size, what it records."""
    annotations = {
        **(deployment.get("metadata", {}).get("annotations") or {}),
        VERSION_ANNOTATION: release.image,
        CONFIG_ANNOTATION: release.config,
        FOLLOWERS_ANNOTATION: json.dumps(release.followers, sort_keys=True),
        **change_stamp(),
    }
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
        {"op": "replace", "path": "/spec/template", "value": release.template},
        {"op": "add", "path": "/spec/replicas", "value": replicas},
    ]


def deploy(
    ctx: Context,
    *,
    service: str,
    image: str,
    manifests: list[dict] | None = None,
    migrate_timeout_seconds: int = 600,
    rollout_timeout_seconds: int = 600,
) -> ServiceState:
    """Migrate, then bring the idle color up on `image` at the live color's size, then smoke-test it.

    With `manifests` (the rendered overlay), the idle color gets the release they describe: their pod
    template and settings with `image`, and the relays' and schedules' templates for when it goes
    live. Without, only its image changes and it keeps the configuration it had."""
    lease_seconds = migrate_timeout_seconds + rollout_timeout_seconds + 120
    with service_lock(ctx, service=service, purpose="deploy", duration_seconds=lease_seconds):
        state = read_state(ctx, service=service)
        release = (
            release_from_manifests(manifests, service=service, color=state.idle, image=image)
            if manifests is not None
            else None
        )
        config = release.config if release else None
        if state.live_state.runs(image=image, config=config):
            what = image if release is None else f"{image} with configuration {config}"
            ctx.say(f"{service}: {what} is live already on {state.live}; nothing to deploy")
            return state
        what = image if release is None else f"{image} with configuration {config}"
        ctx.say(f"{service}: live {state.live} runs {state.live_state.version}; deploying {what} to {state.idle}")
        idle_name = deployment_name(service=service, color=state.idle)
        idle_deployment = ctx.cluster.read_deployment(name=idle_name)
        replicas = max(state.live_state.desired, 1)
        if release is not None:
            _config_maps_ensure(ctx, release=release)
            # The migration runs with the release's own settings, before any pod of it starts.
            migrating = {**idle_deployment, "spec": {**idle_deployment["spec"], "template": release.template}}
            run_migration(
                ctx, service=service, image=image, deployment=migrating, timeout_seconds=migrate_timeout_seconds
            )
            idle_deployment = ctx.cluster.read_deployment(name=idle_name)
            try:
                ctx.cluster.patch_deployment(
                    name=idle_name,
                    body=_release_patch(idle_deployment, release=release, replicas=replicas),
                    content_type=JSON_PATCH,
                )
            except ApiException as error:
                if error.status != 422 or "test" not in (error.body or ""):
                    raise
                raise BlueGreenError(
                    f"{idle_name} changed while this deploy was writing it; nothing was changed",
                    next_step=f"python -m deploy.bluegreen deploy {service} {image} --manifests ... again",
                ) from None
        else:
            run_migration(
                ctx, service=service, image=image, deployment=idle_deployment, timeout_seconds=migrate_timeout_seconds
            )
            ctx.cluster.patch_deployment(
                name=idle_name,
                body={
                    "metadata": {"annotations": {VERSION_ANNOTATION: image, **change_stamp()}},
                    "spec": {
                        "replicas": replicas,
                        # The version label: Prometheus' scrape job copies it onto every series.
                        "template": {
                            "metadata": {"labels": {VERSION_LABEL: version_label(image)}},
                            "spec": {"containers": [{"name": APP_CONTAINER, "image": image}]},
                        },
                    },
                },
                content_type=STRATEGIC_MERGE_PATCH,
            )
        ctx.say(f"{idle_name} set to {what} with {replicas} replica(s); waiting for the rollout")
        wait_for_rollout(
            ctx,
            service=service,
            color=state.idle,
            image=image,
            live=state.live,
            timeout_seconds=rollout_timeout_seconds,
        )
        _point_preview(ctx, service=service, color=state.idle)
        smoke_test(ctx, service=service, color=state.idle)
        ctx.say(f"next: python -m deploy.bluegreen promote {service} --image {image}")
        return read_state(ctx, service=service)


# --- switching -----------------------------------------------------------------------------------------


def _switch(ctx: Context, *, state: ServiceState, action: str, to_color: str, target: ColorState) -> Switched:
    """Flip the stable Service to `to_color` in one compare-and-swap patch, and measure it: the patch,
    then the time until the Service's endpoints are the new color's pods only."""
    service = state.service
    from_color = state.live
    record = switch_record(
        action=action,
        actor=ctx.actor,
        at=ctx.now(),
        from_color=from_color,
        to_color=to_color,
        version=target.version,
        image=target.image,
        from_image=state.live_state.image,
        config=target.config,
        from_config=state.live_state.config,
    )
    body = {
        "metadata": {
            "resourceVersion": state.stable["metadata"]["resourceVersion"],
            "annotations": {
                LAST_SWITCH_ANNOTATION: json.dumps(record, sort_keys=True),
                HISTORY_ANNOTATION: json.dumps(history_with(history=state.history, record=record), sort_keys=True),
                **change_stamp(),
            },
        },
        "spec": {"selector": {"color": to_color}},
    }
    started = ctx.monotonic()
    try:
        ctx.cluster.patch_service(name=service, body=body)
    except ConflictError:
        raise BlueGreenError(
            f"Service {service} changed while this {action} was deciding; nothing was switched",
            next_step=f"python -m deploy.bluegreen status {service}, then {action} again if it still applies",
        ) from None
    patch_seconds = ctx.monotonic() - started
    ctx.say(f"{service}: selector switched {from_color} -> {to_color} ({target.version}) in {patch_seconds:.3f} s")
    try:
        switched = Switched(
            patch_seconds=patch_seconds,
            traffic_seconds=_wait_for_endpoints(ctx, service=service, color=to_color, started=started),
        )
        problems = _after_switch(
            ctx,
            service=service,
            from_color=from_color,
            to_color=to_color,
            image=target.image,
            followers=recorded_followers(state.idle_deployment),
        )
        _record_event(ctx, state=state, action=action, record=record, switched=switched)
    except Exception as error:
        raise _traffic_moved(service=service, to_color=to_color, error=error) from error
    if problems:
        raise TrafficMovedError(
            f"{service}: traffic moved to {to_color}; {len(problems)} step(s) after the switch failed (above)",
            next_step="apply the fixes printed above; the switch itself needs no retry",
        )
    return switched


def _traffic_moved(*, service: str, to_color: str, error: Exception) -> TrafficMovedError:
    """A failure after the selector moved: say so, so that nobody retries the switch to undo it."""
    problem = error.problem if isinstance(error, BlueGreenError) else f"{error.__class__.__name__}: {error}"
    return TrafficMovedError(
        f"{service}: traffic moved to {to_color}; a step after the switch failed: {problem}",
        next_step=f"python -m deploy.bluegreen status {service} shows where things are; the switch itself needs "
        "no retry (running the command again changes nothing)",
    )


def _wait_for_endpoints(ctx: Context, *, service: str, color: str, started: float) -> float | None:
    """Seconds from the switch until the Service's endpoints are only `color`'s pods, or None on timeout."""
    while True:
        if endpoints_only_on(slices=ctx.cluster.list_endpoint_slices(service=service), service=service, color=color):
            seconds = ctx.monotonic() - started
            ctx.say(f"{service}: endpoints list only {color} pods {seconds:.3f} s after the switch")
            return seconds
        if ctx.monotonic() - started >= ctx.endpoints_timeout_seconds:
            ctx.say(
                f"warning: {ctx.endpoints_timeout_seconds:.0f} s after the switch the endpoints of Service {service} "
                f"are not only {color} pods; check kubectl -n {ctx.cluster.namespace} get endpointslices "
                f"-l kubernetes.io/service-name={service}"
            )
            return None
        ctx.sleep(ctx.endpoints_poll_seconds)


def _follower_patch(obj: dict, *, template: dict) -> list[dict]:
    """A JSON Patch that gives a relay or a schedule this pod template, whole, stamped as the tool's."""
    path = "/spec/jobTemplate/spec/template" if obj["kind"] == "CronJob" else "/spec/template"
    annotations = {**(obj.get("metadata", {}).get("annotations") or {}), **change_stamp()}
    return [
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
        {"op": "replace", "path": path, "value": template},
    ]


def _follow(ctx: Context, *, follower, image: str, recorded: dict[str, dict]) -> None:
    """A relay or a schedule onto the new live color's release: the template its release recorded
    (deploy --manifests) on its image, or else only the image."""
    template = follower_template(recorded, follower, image=image)
    read, patch = (
        (ctx.cluster.read_cronjob, ctx.cluster.patch_cronjob)
        if follower.kind == "CronJob"
        else (ctx.cluster.read_deployment, ctx.cluster.patch_deployment)
    )
    if template is not None:
        patch(
            name=follower.name,
            body=_follower_patch(read(name=follower.name), template=template),
            content_type=JSON_PATCH,
        )
        return
    containers = {"containers": [{"name": follower.container, "image": image}]}
    if follower.kind == "CronJob":
        body = {
            "metadata": {"annotations": change_stamp()},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": containers}}}},
        }
    else:
        body = {"metadata": {"annotations": change_stamp()}, "spec": {"template": {"spec": containers}}}
    patch(name=follower.name, body=body, content_type=STRATEGIC_MERGE_PATCH)


def _followers_record(ctx: Context, *, service: str, color: str) -> None:
    """Before the relays and schedules move on, write down on the color they followed until now the
    templates they ran (images left out), so that a rollback to it restores them exactly, whether or
    not that color was itself deployed with manifests."""
    current = {}
    for follower in FOLLOWERS.get(service, ()):
        read = ctx.cluster.read_cronjob if follower.kind == "CronJob" else ctx.cluster.read_deployment
        try:
            current.update(followers_of(read(name=follower.name), follower))
        except NotFoundError:
            continue  # nothing to restore; moving it on fails and says so
    if current:
        annotations = {FOLLOWERS_ANNOTATION: json.dumps(current, sort_keys=True)}
        ctx.cluster.patch_deployment(
            name=deployment_name(service=service, color=color), body={"metadata": {"annotations": annotations}}
        )


def _after_switch(
    ctx: Context, *, service: str, from_color: str, to_color: str, image: str, followers: dict[str, dict]
) -> list[str]:
    """The preview Service follows the new idle color; relays and schedules run the live color's
    release (`followers`: the templates it recorded, if any).

    The switch already happened: each step is tried, and what failed is returned with its fix.
    """
    problems = []
    try:
        _move_autoscaler(ctx, service=service, color=to_color)
    except (ConflictError, NotFoundError, ApiException) as error:
        name = autoscaler_name(service=service)
        problems.append(
            f"HorizontalPodAutoscaler {name} still scales the old color ({error}); fix: kubectl -n "
            f"{ctx.cluster.namespace} patch hpa {name} -p "
            f'\'{{"spec":{{"scaleTargetRef":{{"name":"{deployment_name(service=service, color=to_color)}"}}}}}}\''
        )
    try:
        _point_preview(ctx, service=service, color=from_color)
    except (ConflictError, NotFoundError, ApiException) as error:
        problems.append(
            f"Service {preview_service_name(service=service)} was not pointed at {from_color} ({error}); "
            f"fix: kubectl -n {ctx.cluster.namespace} patch service {preview_service_name(service=service)} "
            f'-p \'{{"spec":{{"selector":{{"color":"{from_color}"}}}}}}\''
        )
    try:
        _followers_record(ctx, service=service, color=from_color)
    except (ConflictError, NotFoundError, ApiException) as error:
        problems.append(
            f"the relays' and schedules' templates were not recorded on {from_color} ({error}): a rollback to it "
            "moves only their image"
        )
    for follower in FOLLOWERS.get(service, ()):
        try:
            _follow(ctx, follower=follower, image=image, recorded=followers)
            with_release = " with its release's configuration" if followers else ""
            ctx.say(f"{follower.kind} {follower.name} now runs {image}{with_release}")
        except (ConflictError, NotFoundError, ApiException) as error:
            target = f"{follower.kind.lower()}/{follower.name}"
            fix = (
                f"python -m deploy.bluegreen rollback {service} and promote again"
                if followers
                else f"kubectl -n {ctx.cluster.namespace} set image {target} {follower.container}={image}"
            )
            problems.append(f"{follower.kind} {follower.name} still runs its old release ({error}); fix: {fix}")
    for problem in problems:
        ctx.say(f"warning: {problem}")
    return problems


def _record_event(ctx: Context, *, state: ServiceState, action: str, record: dict, switched: Switched) -> None:
    now = ctx.now()
    traffic = (
        f"endpoints on {record['to']} after {switched.traffic_seconds:.3f} s"
        if switched.traffic_seconds is not None
        else "endpoints not settled"
    )
    message = (
        f"{record['who']} {action}: {record['from']} -> {record['to']}, version {record['version']} "
        f"({record['image']}), selector patched in {switched.patch_seconds:.3f} s, {traffic}"
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{state.service}.{uuid.uuid4().hex[:16]}", "namespace": ctx.cluster.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Service",
            "name": state.service,
            "namespace": ctx.cluster.namespace,
            "uid": state.stable["metadata"].get("uid"),
        },
        "reason": "BlueGreenPromote" if action == "promote" else "BlueGreenRollback",
        "message": message,
        "type": "Normal",
        "source": {"component": "bluegreen"},
        "reportingComponent": "bluegreen",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    }
    try:
        ctx.cluster.create_event(body=event)
    except (ConflictError, NotFoundError) as error:
        ctx.say(f"warning: the switch is recorded on Service {state.service} but no Event was written ({error})")


@dataclass(frozen=True)
class GateOptions:
    """The release gate before a switch: a Job made from the PodTemplate bluegreen-gate sends the
    same reads to both colors, and the idle one must answer about as well as the live one."""

    thresholds: ComparisonThresholds = field(default_factory=ComparisonThresholds)
    timeout_seconds: int = 300


def run_gate(ctx: Context, *, state: "ServiceState", options: GateOptions) -> GateResult:
    """One gate run against the service's two colors; the Job stays for an hour to be read."""
    try:
        template = ctx.cluster.read_pod_template(name=GATE_TEMPLATE)
    except NotFoundError:
        return GateResult(
            GateOutcome.INCONCLUSIVE,
            (f"no PodTemplate {GATE_TEMPLATE} in namespace {ctx.cluster.namespace}: apply the manifests",),
        )
    job = gate_job(template=template, service=state.service, run=uuid.uuid4().hex[:8], namespace=ctx.cluster.namespace)
    name = job["metadata"]["name"]
    ctx.cluster.create_job(body=job)
    preview = preview_service_name(service=state.service)
    ctx.say(
        f"gate: Job {name} reads {state.service} on {state.idle} (Service {preview}) "
        f"and on {state.live} (Service {state.service}) side by side"
    )
    deadline = ctx.monotonic() + options.timeout_seconds
    while True:
        status = ctx.cluster.read_job(name=name).get("status") or {}
        if status.get("succeeded") or status.get("failed"):
            break
        if ctx.monotonic() > deadline:
            return GateResult(GateOutcome.INCONCLUSIVE, (f"Job {name} did not finish in {options.timeout_seconds} s",))
        ctx.sleep(ctx.poll_seconds)
    pods = ctx.cluster.list_pods(label_selector=f"job-name={name}")
    container = template["template"]["spec"]["containers"][0]["name"]
    log = ctx.cluster.read_pod_log(name=pods[0]["metadata"]["name"], container=container) if pods else ""
    measured = gate_result_line(log)
    if not status.get("succeeded") or measured is None or not {"idle", "live"} <= set(measured):
        tail = " | ".join(log.strip().splitlines()[-5:]) or "no log"
        return GateResult(GateOutcome.INCONCLUSIVE, (f"Job {name} ended without a result: {tail}",))
    return comparison_verdict(
        idle=TrafficSample.from_summary(measured["idle"]),
        live=TrafficSample.from_summary(measured["live"]),
        thresholds=options.thresholds,
    )


def promote(
    ctx: Context,
    *,
    service: str,
    image: str,
    prometheus_url: str | None = None,
    window: str = "5m",
    thresholds: GateThresholds | None = None,
    capacity_timeout_seconds: int = 300,
    gate_options: GateOptions | None = None,
    before_switch: Callable[["ServiceState"], None] | None = None,
    manifests: list[dict] | None = None,
) -> Switched | None:
    """Make `image` the service's live version: a no-op when it is (None), else a switch to the
    idle color that runs it, if that color is fully available and passes the gate. With `manifests`,
    the release wanted is `image` with their configuration (what `deploy --manifests` put there).

    The idle color first gets at least as many pods as the live one has: its HPA may have shrunk it
    while it had no traffic, and it is about to take all of it. Then the release gate (unless
    `gate_options` is None) compares it with the live color on the same synthetic traffic, and,
    given `prometheus_url`, its own metrics must be within `thresholds`.
    """
    gate_seconds = gate_options.timeout_seconds if gate_options else 0
    lease_seconds = capacity_timeout_seconds + gate_seconds + 180
    with service_lock(ctx, service=service, purpose="promote", duration_seconds=lease_seconds):
        state = read_state(ctx, service=service)
        config = configuration_id(manifests, service=service) if manifests is not None else None
        plan = promotion_plan(service=service, image=image, live=state.live_state, idle=state.idle_state, config=config)
        if plan is Plan.NOTHING:
            what = image if config is None else f"{image} with configuration {config}"
            ctx.say(f"{service}: {what} is live already on {state.live}; nothing to do")
            return None
        refusal = promotion_refusal(service=service, idle=state.idle_state, gate=None)
        if refusal is not None:
            raise refusal
        if capacity_shortfall(live=state.live_state, idle=state.idle_state):
            _match_capacity(ctx, state=state, timeout_seconds=capacity_timeout_seconds)
        if gate_options is not None:
            result = run_gate(ctx, state=state, options=gate_options)
            ctx.say(f"release gate for {service} {state.idle}: {result.describe()}")
            refusal = promotion_refusal(service=service, idle=state.idle_state, gate=result, gate_name="release gate")
            if refusal is not None:
                raise refusal
        else:
            ctx.say("release gate skipped (--skip-gate): promoting on the smoke test alone")
        if prometheus_url:
            result = gate.gate_check(
                prometheus_url=prometheus_url,
                service=service,
                color=state.idle,
                window=window,
                thresholds=thresholds or GateThresholds(),
            )
            ctx.say(f"metrics gate for {service} {state.idle}: {result.describe()}")
            refusal = promotion_refusal(service=service, idle=state.idle_state, gate=result)
            if refusal is not None:
                raise refusal
        if before_switch is not None:
            before_switch(state)
        switched = _switch(ctx, state=state, action="promote", to_color=state.idle, target=state.idle_state)
        ctx.say(
            f"{state.live} stays up for rollback (python -m deploy.bluegreen rollback {service}); free it later "
            f"with python -m deploy.bluegreen scale-down {service}"
        )
        return switched


@dataclass(frozen=True)
class WatchOptions:
    """The watch after a switch: the new live color's metrics, every tick over `seconds`."""

    prometheus: gate.Prometheus
    seconds: float = 120
    tick_seconds: float = 5
    window: str = "30s"
    thresholds: WatchThresholds = field(default_factory=WatchThresholds)


def baseline_p95(ctx: Context, *, service: str, color: str, options: WatchOptions) -> tuple[bool, float | None]:
    """Whether Prometheus can be read, and the color's p95 latency over the last two minutes (None
    without traffic): the live color's, just before a switch, is what the watch compares with."""
    try:
        return True, gate.color_series(options.prometheus, service=service, color=color, window="2m")[2]
    except gate.PrometheusError as error:
        ctx.say(f"warning: no watch after the switch: {error}")
        return False, None


def watch(ctx: Context, *, service: str, color: str, baseline: float | None, options: WatchOptions) -> GateResult:
    """Judge the new live color every tick; FAIL after `bad_ticks` degraded windows in a row."""
    deadline = ctx.monotonic() + options.seconds
    bad = 0
    verdict = GateResult(GateOutcome.INCONCLUSIVE, ("no tick yet",))
    while ctx.monotonic() < deadline:
        ctx.sleep(options.tick_seconds)
        try:
            requests_count, errors, p95 = gate.color_series(
                options.prometheus, service=service, color=color, window=options.window
            )
        except gate.PrometheusError as error:
            ctx.say(f"watch {service} {color}: {error}")
            continue
        verdict = watch_verdict(
            requests=requests_count,
            errors=errors,
            p95_seconds=p95,
            baseline_p95_seconds=baseline,
            thresholds=options.thresholds,
        )
        ctx.say(f"watch {service} {color}: {verdict.describe()}")
        bad = bad + 1 if verdict.outcome is GateOutcome.FAIL else 0
        if bad >= options.thresholds.bad_ticks:
            return verdict
    # PASS: the last window passed, or it alone was degraded (one window does not roll back);
    # INCONCLUSIVE: the last window had too little traffic, or no metrics, to judge.
    return verdict if verdict.outcome is not GateOutcome.FAIL else GateResult(GateOutcome.PASS, verdict.reasons)


def promote_and_watch(
    ctx: Context, *, service: str, image: str, watch_options: WatchOptions | None, **promote_options
) -> Switched | None:
    """promote, then watch the new live color and roll back by itself when it degrades (the way
    Argo Rollouts' post-promotion analysis does): RolledBackError then says what happened."""
    baseline: dict = {}

    def measure(state: ServiceState) -> None:  # the live color's latency, gate traffic included
        baseline["readable"], baseline["p95"] = baseline_p95(
            ctx, service=service, color=state.live, options=watch_options
        )
        baseline["old"], baseline["new"] = state.live, state.idle

    switched = promote(
        ctx, service=service, image=image, before_switch=measure if watch_options else None, **promote_options
    )
    if switched is None or not baseline.get("readable"):
        return switched
    old_color, new_color = baseline["old"], baseline["new"]
    ctx.say(f"watching {service} {new_color} for {watch_options.seconds:.0f} s")
    verdict = watch(ctx, service=service, color=new_color, baseline=baseline["p95"], options=watch_options)
    if verdict.outcome is GateOutcome.INCONCLUSIVE:
        ctx.say(
            f"warning: watch {service} {new_color}: nothing to judge at the end of {watch_options.seconds:.0f} s "
            f"({verdict.describe()}); {image} stays live"
        )
        return switched
    if verdict.outcome is not GateOutcome.FAIL:
        ctx.say(f"watch {service} {new_color}: healthy for {watch_options.seconds:.0f} s; {image} stays live")
        return switched
    ctx.say(f"{service} {new_color} degraded after the switch ({verdict.describe()}): rolling back")
    rollback(ctx, service=service, force=True)
    raise RolledBackError(
        f"{service}: {image} went live on {new_color}, degraded ({'; '.join(verdict.reasons)}), and was "
        f"rolled back to {old_color}",
        next_step=f"read {new_color}'s logs and metrics (kubectl -n platform logs deployment/"
        f"{deployment_name(service=service, color=new_color)}), fix, and release a new image",
    )


def _match_capacity(ctx: Context, *, state: ServiceState, timeout_seconds: int) -> None:
    name = deployment_name(service=state.service, color=state.idle)
    replicas = state.live_state.desired
    ctx.say(f"{name} has {state.idle_state.desired} replica(s), {state.live} has {replicas}: scaling up first")
    ctx.cluster.patch_deployment(name=name, body={"spec": {"replicas": replicas}})
    wait_for_rollout(
        ctx,
        service=state.service,
        color=state.idle,
        image=state.idle_state.image,
        live=state.live,
        timeout_seconds=timeout_seconds,
    )


def rollback(ctx: Context, *, service: str, force: bool = False, keep: bool = False) -> Switched | None:
    """Return the service to its state before the last promotion, in one step: a no-op when it is
    there (None). Once the old color's endpoints and the nodes' rules have settled, the color rolled
    back from is scaled to zero (unless `keep`): its pods drain, and the keep-alive connections other
    services hold to it close, so in-cluster traffic leaves it too."""
    with service_lock(ctx, service=service, purpose="rollback", duration_seconds=180):
        state = read_state(ctx, service=service)
        plan = rollback_plan(
            service=service, history=state.history, live=state.live_state, idle=state.idle_state, force=force
        )
        if plan.plan is Plan.NOTHING:
            ctx.say(f"{service}: {plan.to_color} ({plan.image}) is live already, as before the last promotion")
            return None
        if force and not state.idle_state.fully_available:
            ctx.say(f"warning: forced: {state.idle} takes the traffic while {state.idle_state.describe()}")
        shortfall = capacity_shortfall(live=state.live_state, idle=state.idle_state)
        if shortfall:
            ctx.say(
                f"warning: {state.idle} has {shortfall} pod(s) fewer than {state.live}; rolling back now anyway, "
                "its HPA scales it up under the load"
            )
        switched = _switch(ctx, state=state, action="rollback", to_color=state.idle, target=state.idle_state)
        if keep:
            ctx.say(f"{state.live} kept at its size (--keep); scale it down with python -m deploy.bluegreen scale-down")
            return switched
        try:
            _evict(ctx, service=service, color=state.live, settled=switched.traffic_seconds is not None)
        except Exception as error:
            raise _traffic_moved(service=service, to_color=state.idle, error=error) from error
        return switched


def _evict(ctx: Context, *, service: str, color: str, settled: bool) -> None:
    """Scale a color that has just lost its traffic to zero, once the nodes no longer send it any."""
    name = deployment_name(service=service, color=color)
    if not settled:
        raise BlueGreenError(
            f"the endpoints did not settle, so {name} was left up",
            next_step=f"check the EndpointSlices, then python -m deploy.bluegreen scale-down {service}",
        )
    ctx.sleep(ctx.dataplane_settle_seconds)
    ctx.cluster.patch_deployment(name=name, body={"spec": {"replicas": 0}})
    ctx.say(f"{name} scaled to 0: its pods drain, and connections held to them close")


def scale_down(ctx: Context, *, service: str, drain_seconds: float = 120, wait: bool = True) -> None:
    """Scale the idle color to zero once keep-alive connections had `drain_seconds` to leave it."""
    with service_lock(ctx, service=service, purpose="scale-down", duration_seconds=int(drain_seconds) + 120):
        state = read_state(ctx, service=service)
        if state.idle_state.desired == 0:
            ctx.say(f"{service}: {state.idle} is at zero already; nothing to do")
            return
        refusal = scale_down_refusal(service=service, live=state.live_state, idle=state.idle_state)
        if refusal is not None:
            raise refusal
        last = state.last_switch
        last_at = parse_time(last["when"]) if last else None
        remaining = drain_wait_seconds(last_switch_at=last_at, now=ctx.now(), drain_seconds=drain_seconds)
        if remaining > 0:
            if not wait:
                raise BlueGreenError(
                    f"{service} switched at {last['when']}; connections to {state.idle} may still be draining "
                    f"for {remaining:.0f} s",
                    next_step=f"run scale-down again in {remaining:.0f} s, or without --no-wait to wait here",
                )
            ctx.say(f"waiting {remaining:.0f} s for connections to {state.idle} to drain")
            ctx.sleep(remaining)
            state = read_state(ctx, service=service)  # what is idle now is what goes
            refusal = scale_down_refusal(service=service, live=state.live_state, idle=state.idle_state)
            if refusal is not None:
                raise refusal
        name = deployment_name(service=service, color=state.idle)
        ctx.cluster.patch_deployment(name=name, body={"spec": {"replicas": 0}})
        ctx.say(f"{name} scaled to 0; {state.live} serves {service}")
