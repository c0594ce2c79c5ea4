"""Command line of the blue/green tool: `python -m deploy.bluegreen COMMAND ...` (see deploy/README.md)."""

import argparse
import getpass
import os
import socket
import sys
from collections.abc import Sequence

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from deploy.bluegreen import commands, gate
from deploy.bluegreen.cluster import Cluster
from deploy.bluegreen.decisions import SERVICES, BlueGreenError, GateThresholds, RolledBackError, TrafficMovedError
from deploy.bluegreen.releases import manifests_load


def default_actor() -> str:
    """Who is acting, for the record: the CI user when in CI, else the local user and host."""
    for variable in ("BLUEGREEN_ACTOR", "GITHUB_ACTOR"):
        if os.environ.get(variable):
            return os.environ[variable]
    return f"{getpass.getuser()}@{socket.gethostname()}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.bluegreen", description=__doc__)
    parser.add_argument("--namespace", default="platform")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--actor", default=None, help="who is acting, recorded with every switch")
    sub = parser.add_subparsers(dest="command", required=True)

    status = sub.add_parser("status", help="live color, both colors' versions and readiness, last switches")
    status.add_argument("service", nargs="?", choices=SERVICES, help="one service (default: all)")

    deploy = sub.add_parser("deploy", help="migrate, then run IMAGE on the idle color and smoke-test it")
    deploy.add_argument("service", choices=SERVICES)
    deploy.add_argument("image")
    deploy.add_argument(
        "--manifests",
        metavar="PATH",
        help="an overlay folder (rendered with kubectl kustomize) or a file of rendered manifests: the idle "
        "color gets their pod template and settings with IMAGE, and its relays' and schedules' templates for "
        "when it goes live (default: only the image changes)",
    )
    deploy.add_argument("--migrate-timeout", type=int, default=600, help="seconds (default 600)")
    deploy.add_argument("--rollout-timeout", type=int, default=600, help="seconds (default 600)")

    promote = sub.add_parser("promote", help="make IMAGE live: switch to the idle color running it (no-op if live)")
    promote.add_argument("service", choices=SERVICES)
    promote.add_argument("--image", required=True, help="the image that must be live (deployed to the idle color)")
    promote.add_argument(
        "--manifests",
        metavar="PATH",
        help="the overlay (or rendered file) deployed with the image: the release wanted is IMAGE with its "
        "configuration",
    )
    promote.add_argument(
        "--skip-gate",
        action="store_true",
        help="switch without the release gate (the Job comparing both colors on the same synthetic traffic)",
    )
    promote.add_argument("--gate-timeout", type=int, default=300, help="seconds the gate's Job may take (default 300)")
    promote.add_argument(
        "--watch",
        type=float,
        default=120,
        metavar="SECONDS",
        help="after the switch, watch the new color's metrics this long and roll back by itself if it "
        "degrades (default 120; 0: no watch)",
    )
    promote.add_argument(
        "--prometheus-service",
        default="monitoring/prometheus:web",
        help="the Prometheus the watch reads, through the API server (default monitoring/prometheus:web)",
    )
    promote.add_argument(
        "--prometheus-url",
        help="a Prometheus this machine reaches: the watch reads it, and the idle color's own metrics "
        "must then pass --max-error-rate and --max-p95-seconds before the switch",
    )
    promote.add_argument("--window", default="5m", help="PromQL range of the gate (default 5m)")
    promote.add_argument("--max-error-rate", type=float, default=0.01, help="share of 5xx (default 0.01)")
    promote.add_argument("--max-p95-seconds", type=float, default=0.5, help="p95 latency (default 0.5)")
    promote.add_argument("--min-requests", type=float, default=50, help="fewer is inconclusive (default 50)")
    promote.add_argument(
        "--capacity-timeout", type=int, default=300, help="seconds to grow the idle color first (default 300)"
    )

    rollback = sub.add_parser(
        "rollback", help="return to the state before the last promotion in one step (no-op if there)"
    )
    rollback.add_argument("service", choices=SERVICES)
    rollback.add_argument("--force", action="store_true", help="even when the previous color is not fully available")
    rollback.add_argument(
        "--keep", action="store_true", help="leave the color rolled back from at its size (default: scale it to 0)"
    )

    scale_down = sub.add_parser("scale-down", help="scale the idle color to zero after connections drained")
    scale_down.add_argument("service", choices=SERVICES)
    scale_down.add_argument(
        "--drain-seconds", type=float, default=120, help="time since the last switch first (default 120)"
    )
    scale_down.add_argument("--no-wait", action="store_true", help="refuse instead of waiting for the drain")
    return parser


def load_api_client(*, kubeconfig: str | None, context: str | None) -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not (kubeconfig or context):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def run(arguments: argparse.Namespace, *, ctx: commands.Context) -> None:
    if arguments.command == "status":
        for service in [arguments.service] if arguments.service else SERVICES:
            commands.status(ctx, service=service)
    elif arguments.command == "deploy":
        commands.deploy(
            ctx,
            service=arguments.service,
            image=arguments.image,
            manifests=manifests_load(arguments.manifests) if arguments.manifests else None,
            migrate_timeout_seconds=arguments.migrate_timeout,
            rollout_timeout_seconds=arguments.rollout_timeout,
        )
    elif arguments.command == "promote":
        watch_options = None
        if arguments.watch > 0:
            prometheus = gate.Prometheus(
                url=arguments.prometheus_url, cluster=ctx.cluster, service=arguments.prometheus_service
            )
            watch_options = commands.WatchOptions(prometheus=prometheus, seconds=arguments.watch)
        commands.promote_and_watch(
            ctx,
            service=arguments.service,
            image=arguments.image,
            watch_options=watch_options,
            gate_options=None if arguments.skip_gate else commands.GateOptions(timeout_seconds=arguments.gate_timeout),
            prometheus_url=arguments.prometheus_url,
            window=arguments.window,
            thresholds=GateThresholds(
                max_error_rate=arguments.max_error_rate,
                max_p95_seconds=arguments.max_p95_seconds,
                min_requests=arguments.min_requests,
            ),
            capacity_timeout_seconds=arguments.capacity_timeout,
            manifests=manifests_load(arguments.manifests) if arguments.manifests else None,
        )
    elif arguments.command == "rollback":
        commands.rollback(ctx, service=arguments.service, force=arguments.force, keep=arguments.keep)
    elif arguments.command == "scale-down":
        commands.scale_down(
            ctx, service=arguments.service, drain_seconds=arguments.drain_seconds, wait=not arguments.no_wait
        )


# Exit codes: the state asked for was reached (or was there already); refused or failed with nothing
# moved (a retry is safe); the traffic switch happened but a step after it failed (do not undo it);
# the switch happened, the new color degraded under the watch, and the tool rolled it back.
EXIT_DONE, EXIT_REFUSED, EXIT_TRAFFIC_MOVED, EXIT_ROLLED_BACK = 0, 1, 3, 4


def main(argv: Sequence[str] | None = None, *, api_client: client.ApiClient | None = None, **context_options) -> int:
    """Run one command and answer with one of the exit codes above, printing what to do next."""
    arguments = build_parser().parse_args(argv)
    api_client = api_client or load_api_client(kubeconfig=arguments.kubeconfig, context=arguments.context)
    ctx = commands.Context(
        cluster=Cluster(api_client=api_client, namespace=arguments.namespace),
        actor=arguments.actor or default_actor(),
        **context_options,
    )
    try:
        run(arguments, ctx=ctx)
    except TrafficMovedError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_TRAFFIC_MOVED
    except RolledBackError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_ROLLED_BACK
    except BlueGreenError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_REFUSED
    except ApiException as error:
        sys.stderr.write(f"error: {api_error(error, namespace=arguments.namespace)}\n")
        return EXIT_REFUSED
    except urllib3.exceptions.HTTPError as error:
        sys.stderr.write(
            f"error: the Kubernetes API did not answer ({error.__class__.__name__})\n"
            "Next: check the cluster and your context: kubectl cluster-info\n"
        )
        return EXIT_REFUSED
    return EXIT_DONE


def api_error(error: ApiException, *, namespace: str) -> BlueGreenError:
    """An unexpected answer of the API server, with what usually causes it."""
    if error.status in {401, 403}:
        next_step = (
            f"check the kubeconfig context, and that your identity is bound to Role bluegreen-operator in "
            f"namespace {namespace} (kubectl auth can-i patch services -n {namespace})"
        )
    else:
        next_step = "retry; if it persists, look at the API server's message above and the cluster's health"
    return BlueGreenError(f"the Kubernetes API answered {error.status} {error.reason}", next_step=next_step)


if __name__ == "__main__":
    sys.exit(main())
