"""The blue/green tool's decisions as plain functions: which color is live, whether a color is ready
to take traffic, whether the metrics gate passes, who holds the lock, what a switch records.

Nothing here talks to Kubernetes or Prometheus; `commands` feeds these functions what it read.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

COLORS = ("blue", "green")
SERVICES = ("auth", "orders", "payments", "notifications")


@dataclass(frozen=True)
class Follower:
    """A workload outside the two colors that runs the live color's image (kind, name, container)."""

    kind: str
    name: str
    container: str


# Every workload outside the two colors that runs a service's code (its relay or worker, its
# schedules) follows the live color's image on promote and rollback: it reads and writes the same
# tables with the same code as the web pods that serve the traffic.
FOLLOWERS = {
    "auth": (Follower("CronJob", "auth-prune", "prune"),),
    "orders": (
        Follower("Deployment", "orders-outbox-relay", "relay"),
        Follower("CronJob", "orders-payments-settle", "settle"),
        Follower("CronJob", "orders-prune", "prune"),
    ),
    "payments": (
        Follower("Deployment", "payments-outbox-relay", "relay"),
        Follower("CronJob", "payments-requests-finish", "requests-finish"),
        Follower("CronJob", "payments-prune", "prune"),
    ),
    "notifications": (
        Follower("Deployment", "notifications-email-worker", "worker"),
        Follower("CronJob", "notifications-prune", "prune"),
    ),
}
APP_CONTAINER = "app"
ANNOTATION_PREFIX = "bluegreen.platform.dev"
LAST_SWITCH_ANNOTATION = f"{ANNOTATION_PREFIX}/last-switch"
HISTORY_ANNOTATION = f"{ANNOTATION_PREFIX}/history"
VERSION_ANNOTATION = f"{ANNOTATION_PREFIX}/version"
# The release a color runs besides its image (deploy --manifests, deploy/bluegreen/releases.py): the
# id of its configuration, and the templates its relays and schedules get when it goes live.
CONFIG_ANNOTATION = f"{ANNOTATION_PREFIX}/config"
FOLLOWERS_ANNOTATION = f"{ANNOTATION_PREFIX}/followers"
# A new value on every write of a field the tool owns (a selector's color, an image, the autoscaler's
# target): the admission policy of deploy/base/bluegreen-guard.yaml lets those fields change only in
# a request that also changes this, so a re-applied manifest or a stray `kubectl set image` cannot
# move traffic or images behind the tool's back.
CHANGE_ANNOTATION = f"{ANNOTATION_PREFIX}/change"
HISTORY_LENGTH = 10


class BlueGreenError(Exception):
    """A refusal or failure, with what the operator should do next. Nothing moved: a retry is safe."""

    def __init__(self, problem: str, *, next_step: str):
        super().__init__(problem)
        self.problem = problem
        self.next_step = next_step

    def __str__(self) -> str:
        return f"{self.problem}\nNext: {self.next_step}"


class TrafficMovedError(BlueGreenError):
    """The switch happened, and a step after it failed: traffic is on the new color. Its own exit
    code tells a pipeline not to retry the switch (a retry is a no-op anyway) but to fix the step."""


class RolledBackError(BlueGreenError):
    """The switch happened, the new color degraded under the watch that followed, and the tool rolled
    it back by itself: the state asked for (the image live) was not kept. Its own exit code."""


def other_color(color: str) -> str:
    if color not in COLORS:
        raise ValueError(f"{color!r} is not a color; expected one of {COLORS}")
    return COLORS[1 - COLORS.index(color)]


def deployment_name(*, service: str, color: str) -> str:
    return f"{service}-{color}"


def preview_service_name(*, service: str) -> str:
    return f"{service}-preview"


def autoscaler_name(*, service: str) -> str:
    """The service's one HorizontalPodAutoscaler, which the tool keeps on the live color."""
    return service


def lease_name(*, service: str) -> str:
    return f"bluegreen-{service}"


def migration_job_name(*, service: str, image: str) -> str:
    """One Job name per service and image, so that rerunning a deploy of the same image reuses it."""
    digest = hashlib.sha256(image.encode()).hexdigest()[:10]
    return f"{service}-migrate-{digest}"


def selected_color(*, service_object: dict, service: str) -> str:
    """The color a Service's selector names; refuses a selector that names none or another service."""
    selector = service_object.get("spec", {}).get("selector") or {}
    name = service_object.get("metadata", {}).get("name", "?")
    color = selector.get("color")
    if color not in COLORS or selector.get("app.kubernetes.io/name") != service:
        raise BlueGreenError(
            f"Service {name} selects {selector}, not one color of {service}",
            next_step=f"apply the manifests (kubectl apply -k deploy/overlays/<env>) so {name} selects "
            f"app.kubernetes.io/name={service} and color=blue or green",
        )
    return color


def image_version(image: str) -> str:
    """The version an image reference names: its tag, or its digest, or `latest` when it has neither."""
    if "@" in image:
        return image.rsplit("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


VERSION_LABEL = "app.kubernetes.io/version"


def version_label(image: str) -> str:
    """The image's version as a label value (63 characters of [A-Za-z0-9._-], alphanumeric at both
    ends): a tag as it is, a digest as `sha256-` and its first 12 hex digits."""
    version = image_version(image)
    if version.startswith("sha256:"):
        version = "sha256-" + version.removeprefix("sha256:")[:12]
    cleaned = "".join(character if character.isalnum() or character in "._-" else "-" for character in version)
    return cleaned[:63].strip("._-") or "unknown"


@dataclass(frozen=True)
class ColorState:
    """What a color's Deployment says about itself."""

    color: str
    image: str
    desired: int
    updated: int
    available: int
    total: int
    generation: int
    observed_generation: int
    config: str = ""  # the configuration id of its release ("" when deployed without manifests)

    @property
    def version(self) -> str:
        return image_version(self.image)

    def runs(self, *, image: str, config: str | None) -> bool:
        """Whether it runs that release: the image, and the configuration when one is named."""
        return self.image == image and (config is None or self.config == config)

    @property
    def rolled_out(self) -> bool:
        """The controller has seen the latest spec and every pod runs it and is available."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.available == self.desired
            and self.total == self.desired
        )

    @property
    def fully_available(self) -> bool:
        """Rolled out with at least one pod: able to take all of the service's traffic."""
        return self.desired > 0 and self.rolled_out

    def describe(self) -> str:
        configuration = f", configuration {self.config}" if self.config else ""
        return (
            f"{self.color}: {self.version} ({self.image}){configuration}, {self.available}/{self.desired} "
            f"available, {self.updated} updated"
        )


def color_state(*, deployment: dict, color: str) -> ColorState:
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    image = next((c.get("image", "") for c in containers if c.get("name") == APP_CONTAINER), "")
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    return ColorState(
        color=color,
        image=image,
        desired=int(spec.get("replicas", 1)),
        updated=int(status.get("updatedReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        total=int(status.get("replicas", 0)),
        generation=int(deployment.get("metadata", {}).get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        config=annotations.get(CONFIG_ANNOTATION, ""),
    )


# --- the metrics gate ---------------------------------------------------------------------------------


class GateOutcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class GateThresholds:
    max_error_rate: float = 0.01
    max_p95_seconds: float = 0.5
    min_requests: float = 50


@dataclass(frozen=True)
class GateResult:
    outcome: GateOutcome
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        return f"{self.outcome.value}: {'; '.join(self.reasons)}"


def gate_verdict(
    *,
    requests: float | None,
    errors: float | None,
    p95_seconds: float | None,
    thresholds: GateThresholds,
) -> GateResult:
    """Pass only on enough data within thresholds. Missing data is inconclusive, never a pass.

    `errors` may be absent when no 5xx series exists yet: with requests counted, that means zero errors.
    """
    if requests is None:
        return GateResult(GateOutcome.INCONCLUSIVE, ("no request metrics for the idle color",))
    if requests < thresholds.min_requests:
        return GateResult(
            GateOutcome.INCONCLUSIVE,
            (f"only {requests:.0f} requests in the window, {thresholds.min_requests:.0f} needed",),
        )
    if p95_seconds is None:
        return GateResult(GateOutcome.INCONCLUSIVE, ("no latency histogram for the idle color",))
    error_rate = (errors or 0.0) / requests
    failures = []
    if error_rate > thresholds.max_error_rate:
        failures.append(f"error rate {error_rate:.2%} above {thresholds.max_error_rate:.2%}")
    if p95_seconds > thresholds.max_p95_seconds:
        failures.append(f"p95 latency {p95_seconds:.3f} s above {thresholds.max_p95_seconds:.3f} s")
    if failures:
        return GateResult(GateOutcome.FAIL, tuple(failures))
    return GateResult(
        GateOutcome.PASS,
        (f"{requests:.0f} requests, error rate {error_rate:.2%}, p95 {p95_seconds:.3f} s",),
    )


# --- the release gate: synthetic traffic to both colors, compared -------------------------------------

GATE_TEMPLATE = "bluegreen-gate"  # the PodTemplate the gate's Jobs are made from
GATE_RESULT_PREFIX = "GATE-RESULT "


@dataclass(frozen=True)
class ComparisonThresholds:
    """How much worse than the live color the idle one may do on the same synthetic traffic."""

    max_error_rate_increase: float = 0.01  # 5xx (or no answer): share of requests, above the live color's
    max_client_error_increase: float = 0.01  # unexpected 4xx: share of requests, above the live color's
    max_latency_ratio: float = 1.5  # p95 latency, as a multiple of the live color's ...
    latency_slack_ms: float = 50  # ... plus this, so that a few ms of noise on a fast service pass
    min_requests: int = 100  # per color; fewer is inconclusive


@dataclass(frozen=True)
class TrafficSample:
    """What one color answered to the gate's traffic (from k6's summary)."""

    requests: int
    p95_ms: float | None
    server_error_rate: float | None
    client_error_rate: float | None

    @classmethod
    def from_summary(cls, values: dict) -> "TrafficSample":
        return cls(
            requests=int(values.get("requests") or 0),
            p95_ms=values.get("p95_ms"),
            server_error_rate=values.get("server_error_rate"),
            client_error_rate=values.get("client_error_rate"),
        )

    def describe(self) -> str:
        p95 = f"{self.p95_ms:.0f} ms" if self.p95_ms is not None else "none"
        return (
            f"{self.requests} requests, 5xx {self.server_error_rate or 0:.2%}, "
            f"unexpected 4xx {self.client_error_rate or 0:.2%}, p95 {p95}"
        )


def gate_result_line(log: str) -> dict | None:
    """The gate Job's verdict line (the last GATE-RESULT line of its log), parsed, or None."""
    for line in reversed(log.splitlines()):
        if line.startswith(GATE_RESULT_PREFIX):
            try:
                parsed = json.loads(line.removeprefix(GATE_RESULT_PREFIX))
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def comparison_verdict(*, idle: TrafficSample, live: TrafficSample, thresholds: ComparisonThresholds) -> GateResult:
    """Pass when the idle color answered the same traffic about as well as the live color did."""
    seen = f"idle {idle.describe()}; live {live.describe()}"
    if min(idle.requests, live.requests) < thresholds.min_requests:
        return GateResult(
            GateOutcome.INCONCLUSIVE, (f"too few requests ({thresholds.min_requests} needed per color): {seen}",)
        )
    if None in (idle.p95_ms, live.p95_ms, idle.server_error_rate, live.server_error_rate):
        return GateResult(GateOutcome.INCONCLUSIVE, (f"incomplete measurements: {seen}",))
    failures = []
    server_excess = idle.server_error_rate - live.server_error_rate
    if server_excess > thresholds.max_error_rate_increase:
        failures.append(
            f"5xx {idle.server_error_rate:.2%} against {live.server_error_rate:.2%} on the live color "
            f"(more than {thresholds.max_error_rate_increase:.2%} above)"
        )
    client_excess = (idle.client_error_rate or 0) - (live.client_error_rate or 0)
    if client_excess > thresholds.max_client_error_increase:
        failures.append(
            f"unexpected 4xx {idle.client_error_rate or 0:.2%} against {live.client_error_rate or 0:.2%} on the "
            f"live color (more than {thresholds.max_client_error_increase:.2%} above)"
        )
    latency_limit = live.p95_ms * thresholds.max_latency_ratio + thresholds.latency_slack_ms
    if idle.p95_ms > latency_limit:
        failures.append(
            f"p95 {idle.p95_ms:.0f} ms against {live.p95_ms:.0f} ms on the live color (limit {latency_limit:.0f} ms)"
        )
    if failures:
        return GateResult(GateOutcome.FAIL, (*failures, seen))
    return GateResult(GateOutcome.PASS, (seen,))


def gate_job(*, template: dict, service: str, run: str, namespace: str) -> dict:
    """The Job of one gate run: the PodTemplate's pod, told which service to read and where its
    colors are (the preview Service is the idle color, the stable one the live color)."""
    pod = json.loads(json.dumps(template["template"]))  # a deep copy: the template is not ours to change
    labels = {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/component": "gate",
        "app.kubernetes.io/managed-by": "bluegreen",
    }
    pod.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    pod["spec"]["restartPolicy"] = "Never"
    domain = f"{namespace}.svc.cluster.local"
    settings = {
        "SERVICE": service,
        "IDLE_URL": f"http://{preview_service_name(service=service)}.{domain}",
        "LIVE_URL": f"http://{service}.{domain}",
    }
    for container in pod["spec"]["containers"]:
        env = [item for item in container.get("env", []) if item["name"] not in settings]
        container["env"] = env + [{"name": name, "value": value} for name, value in settings.items()]
    env = {item["name"]: item.get("value") for item in pod["spec"]["containers"][0]["env"]}
    # gate.js's warm-up, then its measured reads (its defaults when the template sets neither).
    run_seconds = duration_seconds(env.get("WARMUP") or "10s") + duration_seconds(env.get("DURATION") or "30s")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{service}-gate-{run}", "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": run_seconds + 180,
            "ttlSecondsAfterFinished": 3600,
            "template": pod,
        },
    }


def duration_seconds(value: str) -> int:
    """k6's "30s", "2m", "1m30s" in seconds."""
    total, number = 0, ""
    for character in value:
        if character.isdigit():
            number += character
        elif character in "hms" and number:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[character]
            number = ""
        else:
            raise ValueError(f"not a duration: {value!r}")
    if number:
        total += int(number)
    return total


# --- the watch after a switch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchThresholds:
    max_error_rate: float = 0.01  # 5xx share of the new live color's requests over a tick's window
    max_latency_ratio: float = 2.0  # p95, as a multiple of the old color's before the switch ...
    latency_slack_seconds: float = 0.1  # ... plus this
    min_requests: float = 20  # per window; fewer is no verdict for that tick
    bad_ticks: int = 2  # this many degraded windows in a row roll back


def watch_verdict(
    *,
    requests: float | None,
    errors: float | None,
    p95_seconds: float | None,
    baseline_p95_seconds: float | None,
    thresholds: WatchThresholds,
    fallback_p95_seconds: float = 0.5,
) -> GateResult:
    """One tick of the watch: is the new live color degraded over the last window?"""
    if requests is None or requests < thresholds.min_requests or p95_seconds is None:
        return GateResult(GateOutcome.INCONCLUSIVE, (f"{requests or 0:.0f} requests in the window",))
    error_rate = (errors or 0.0) / requests
    limit = (
        baseline_p95_seconds * thresholds.max_latency_ratio + thresholds.latency_slack_seconds
        if baseline_p95_seconds is not None
        else fallback_p95_seconds
    )
    seen = f"{requests:.0f} requests, 5xx {error_rate:.2%}, p95 {p95_seconds:.3f} s (limit {limit:.3f} s)"
    if error_rate > thresholds.max_error_rate or p95_seconds > limit:
        return GateResult(GateOutcome.FAIL, (seen,))
    return GateResult(GateOutcome.PASS, (seen,))


# --- promote, roll back, scale down -------------------------------------------------------------------


class Plan(StrEnum):
    """What a declarative command has to do to reach the state it names."""

    NOTHING = "nothing"  # the cluster is there already
    SWITCH = "switch"


def promotion_plan(*, service: str, image: str, live: ColorState, idle: ColorState, config: str | None = None) -> Plan:
    """`promote SERVICE --image IMAGE [--manifests M]` wants that release live (IMAGE, with M's
    configuration `config` when given): nothing to do if it is, a switch if the idle color runs it,
    a refusal otherwise (it has to be deployed first)."""
    if live.runs(image=image, config=config):
        return Plan.NOTHING
    if not idle.runs(image=image, config=config):
        wanted = image if config is None else f"{image} with configuration {config}"
        seen = [
            f"{color.image}{f' with configuration {color.config}' if config is not None else ''} on {color.color}"
            for color in (live, idle)
        ]
        manifests = "" if config is None else " --manifests M"
        raise BlueGreenError(
            f"{service} runs {seen[0]} (live) and {seen[1]}; {wanted} is on neither",
            next_step="deploy it to the idle color first: "
            f"python -m deploy.bluegreen deploy {service} {image}{manifests}",
        )
    return Plan.SWITCH


@dataclass(frozen=True)
class RollbackPlan:
    plan: Plan
    to_color: str
    image: str  # what the color rolled back to runs


def last_promotion(history: list[dict]) -> dict | None:
    return next((record for record in history if record.get("action") == "promote"), None)


def rollback_plan(
    *, service: str, history: list[dict], live: ColorState, idle: ColorState, force: bool
) -> RollbackPlan:
    """`rollback SERVICE` wants the state before the last promotion: that promotion's `from` color
    live again, still on the image it ran then. Nothing to do once it is live; refused when that
    color now runs something else, or is not available (unless forced: for when it is unready for a
    reason outside it, such as a database both colors share)."""
    promotion = last_promotion(history)
    if promotion is None:
        raise BlueGreenError(
            f"no promotion of {service} is recorded, so there is no earlier state to return to",
            next_step=f"python -m deploy.bluegreen status {service}",
        )
    previous_color = promotion["from"]
    if live.color == previous_color:
        return RollbackPlan(plan=Plan.NOTHING, to_color=live.color, image=live.image)
    expected = promotion.get("from_image") or idle.image
    expected_config = promotion.get("from_config", idle.config)
    if idle.image != expected or idle.config != expected_config:
        now = f"{idle.image}" + (f" with configuration {idle.config}" if idle.config != expected_config else "")
        then = f"{expected}" + (f" with configuration {expected_config}" if idle.config != expected_config else "")
        raise BlueGreenError(
            f"{service} {idle.color} runs {now} now, not {then}, which it ran before the promotion "
            f"of {promotion['when']}",
            next_step=f"deploy the version to return to (python -m deploy.bluegreen deploy {service} IMAGE), then "
            f"promote it with --image",
        )
    if not force:
        refusal = rollback_refusal(service=service, previous=idle)
        if refusal is not None:
            raise refusal
    return RollbackPlan(plan=Plan.SWITCH, to_color=idle.color, image=idle.image)


def promotion_refusal(
    *, service: str, idle: ColorState, gate: GateResult | None, gate_name: str = "metrics gate"
) -> BlueGreenError | None:
    """Why the idle color must not take traffic now, or None when it may."""
    if not idle.fully_available:
        return BlueGreenError(
            f"{service} {idle.color} is not fully available ({idle.describe()})",
            next_step=f"deploy it first (python -m deploy.bluegreen deploy {service} IMAGE) or wait for "
            f"kubectl -n platform rollout status deployment/{deployment_name(service=service, color=idle.color)}",
        )
    if gate is None or gate.outcome is GateOutcome.PASS:
        return None
    if gate.outcome is GateOutcome.FAIL:
        return BlueGreenError(
            f"{service} {idle.color} failed the {gate_name} ({gate.describe()})",
            next_step=f"read its logs (kubectl -n platform logs deployment/"
            f"{deployment_name(service=service, color=idle.color)}), fix and deploy a new image; "
            "the live color keeps serving",
        )
    if gate_name == "release gate":
        next_step = (
            f"read the gate Job's log (kubectl -n platform logs -l app.kubernetes.io/component=gate,"
            f"app.kubernetes.io/name={service} --tail=20) and promote again; to switch without the gate, "
            "add --skip-gate deliberately"
        )
    else:
        next_step = (
            f"send test traffic through Service {preview_service_name(service=service)} and promote again; "
            "to switch without the metrics gate, leave out --prometheus-url deliberately"
        )
    return BlueGreenError(
        f"{service} {idle.color}: the {gate_name} is inconclusive ({gate.describe()})", next_step=next_step
    )


def endpoints_only_on(*, slices: list[dict], service: str, color: str) -> bool:
    """Whether a Service's EndpointSlices list ready pods, and only pods of `color`'s Deployment."""
    prefix = f"{deployment_name(service=service, color=color)}-"
    names = [
        (endpoint.get("targetRef") or {}).get("name", "")
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready", True)
    ]
    return bool(names) and all(name.startswith(prefix) for name in names)


def capacity_shortfall(*, live: ColorState, idle: ColorState) -> int:
    """Pods the idle color lacks to carry what the live color carries (its HPA may have shrunk it while idle)."""
    return max(0, live.desired - idle.desired)


def rollback_refusal(*, service: str, previous: ColorState) -> BlueGreenError | None:
    """Rolling back needs the previous color still up; it is gone once scaled down."""
    if previous.fully_available:
        return None
    return BlueGreenError(
        f"{service} {previous.color} cannot take traffic back ({previous.describe()})",
        next_step=f"if it is unready for a reason outside it (the shared database, say), roll back with --force; "
        f"otherwise deploy the previous image (python -m deploy.bluegreen deploy {service} IMAGE) and promote "
        f"it with --image",
    )


def scale_down_refusal(*, service: str, live: ColorState, idle: ColorState) -> BlueGreenError | None:
    """The idle color is the rollback: keep it while the live color is not fully available."""
    if not live.fully_available:
        return BlueGreenError(
            f"{service} {live.color} (live) is not fully available ({live.describe()}); {idle.color} is the way back",
            next_step=f"roll back (python -m deploy.bluegreen rollback {service}) or wait until the live color "
            "is available, then scale down",
        )
    return None


def drain_wait_seconds(*, last_switch_at: datetime | None, now: datetime, drain_seconds: float) -> float:
    """How much longer to wait before the old color may go: keep-alive connections still reach it."""
    if last_switch_at is None:
        return 0.0
    remaining = (last_switch_at + timedelta(seconds=drain_seconds) - now).total_seconds()
    return max(0.0, remaining)


# --- the lock -----------------------------------------------------------------------------------------


class LockState(StrEnum):
    FREE = "free"
    MINE = "mine"
    HELD = "held"
    EXPIRED = "expired"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def lock_state(*, lease_spec: dict | None, now: datetime, me: str) -> LockState:
    """Whether the Lease lets `me` proceed: free or expired may be taken, mine is mine, held blocks."""
    if not lease_spec or not lease_spec.get("holderIdentity"):
        return LockState.FREE
    if lease_spec["holderIdentity"] == me:
        return LockState.MINE
    renewed = parse_time(lease_spec.get("renewTime")) or parse_time(lease_spec.get("acquireTime"))
    duration = int(lease_spec.get("leaseDurationSeconds") or 0)
    if renewed is None or renewed + timedelta(seconds=duration) <= now:
        return LockState.EXPIRED
    return LockState.HELD


def lock_held_error(*, service: str, lease_spec: dict) -> BlueGreenError:
    renewed = lease_spec.get("renewTime") or lease_spec.get("acquireTime")
    return BlueGreenError(
        f"another operation on {service} holds the lock: {lease_spec.get('holderIdentity')} since {renewed} "
        f"for {lease_spec.get('leaseDurationSeconds')} s",
        next_step=f"wait for it to finish (python -m deploy.bluegreen status {service}); if that process is "
        f"gone, the lock expires by itself, or delete it: kubectl -n platform delete lease "
        f"{lease_name(service=service)}",
    )


# --- what a switch records ------------------------------------------------------------------------------


def switch_record(
    *,
    action: str,
    actor: str,
    at: datetime,
    from_color: str,
    to_color: str,
    version: str,
    image: str,
    from_image: str,
    config: str = "",
    from_config: str = "",
) -> dict:
    """`image`, `version` and `config` are what the new live color runs; `from_image` and
    `from_config` what the old one ran, the state a rollback returns to."""
    return {
        "action": action,
        "who": actor,
        "when": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from": from_color,
        "to": to_color,
        "version": version,
        "image": image,
        "from_image": from_image,
        "config": config,
        "from_config": from_config,
    }


def history_with(*, history: list[dict], record: dict) -> list[dict]:
    """The newest switches first, at most HISTORY_LENGTH of them (annotations have a size limit)."""
    return [record, *history][:HISTORY_LENGTH]
