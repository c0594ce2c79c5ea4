#!/usr/bin/env bash
# Deploys the platform onto the running local cluster the way deploy/README.md tells an operator:
# the real image built (platform/containers/image.sh) and loaded into the node with the PostgreSQL
# stand-in, the overlay's secrets made once, `kubectl apply --server-side -k deploy/overlays/local`,
# Prometheus (`-k deploy/monitoring/local`), the migration Jobs waited for, the idle green colors
# scaled to zero by the blue/green tool (the steps every cluster shares: ../platform-steps.sh).
# Safe to run again: images already loaded are kept, and fields the blue/green tool has taken over
# since (live color, images, replicas) are left to it.
# Env: APP_VERSION (default dev), PYTHON (the venv's python, for the blue/green tool).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"
# shellcheck source=../platform-steps.sh disable=SC1091 # followed with shellcheck -x; checked on its own
source "$(dirname "$0")/../platform-steps.sh"

REPO=$(cd "$CLUSTER_DIR/../.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
APP_IMAGE=platform-app:dev
OVERLAY=$REPO/deploy/overlays/local
export KUBECONFIG=$KUBECONFIG_ADMIN
kubectl() { "$BIN_DIR/kubectl" "$@"; }

[[ $(id -u) == 0 ]] || die "platform.sh needs root (the node's containerd and volumes)"
kubectl get --raw /readyz >/dev/null 2>&1 || die "no API server at $API_SERVER; run deploy/cluster/up.sh first"
[[ $STATE_DIR == /var/lib/platform-cluster ]] ||
	die "deploy/overlays/local/postgresql-volume.yaml names /var/lib/platform-cluster/volumes; PLATFORM_CLUSTER_STATE=$STATE_DIR differs"

images_build_and_load() {
	PYTHON=$PYTHON "$CLUSTER_DIR/images.sh" app "$APP_IMAGE" "${APP_VERSION:-dev}"
	PYTHON=$PYTHON "$CLUSTER_DIR/images.sh" postgres
	"$CLUSTER_DIR/images.sh" backup
	# Prometheus (the watch after a switch reads it), kube-state-metrics (the alerts on Jobs, pods and
	# autoscalers read it), Jaeger (the services send it their spans) and k6 (the release gate's Job runs it).
	"$CLUSTER_DIR/images.sh" prometheus
	"$CLUSTER_DIR/images.sh" kube-state-metrics
	"$CLUSTER_DIR/images.sh" jaeger
	"$CLUSTER_DIR/images.sh" k6
}

# The Gateway API and Envoy Gateway CRDs (deploy/gateway/crds.sh), so that the API server admits the
# Gateway, its routes and policies, checking them against their schemas and CEL rules. No Gateway
# implementation runs on this cluster: nothing serves them (deploy/gateway/README.md).
apply_gateway_definitions() {
	local definitions
	definitions=$("$REPO/deploy/gateway/crds.sh") || die "deploy/gateway/crds.sh could not fetch the Gateway API CRDs"
	kubectl apply --server-side --field-manager=platform-crds -f - <<<"$definitions" >/dev/null ||
		die "kubectl apply --server-side of the Gateway API CRDs failed"
	kubectl wait --for=condition=Established --timeout=60s \
		crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io \
		crd/backendtrafficpolicies.gateway.envoyproxy.io >/dev/null ||
		die "the Gateway API CRDs are not established; kubectl get crd"
}

apply_overlay() {
	local secrets=$REPO/deploy/overlays/kind/secrets fingerprint
	# All of them on a first start; the backups' key pair alone for a folder made before backups existed.
	[[ -f $secrets/backup-identity.txt ]] || "$REPO/deploy/overlays/kind/make-secrets.sh"
	# The database's roles were made with the passwords of the first apply: other secrets (another
	# checkout, a new make-secrets.sh) would lock every service out of it. The cluster remembers
	# which ones it was given; make cluster-down forgets them with the rest of its state.
	# The backups' keys are not among them: they can be added to a running cluster.
	fingerprint=$(find "$secrets" -maxdepth 1 -type f ! -name 'backup-*' -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum | cut -c1-16)
	if [[ ! -f $STATE_DIR/secrets.fingerprint ]]; then
		echo "$fingerprint" >"$STATE_DIR/secrets.fingerprint"
	elif [[ $(cat "$STATE_DIR/secrets.fingerprint") != "$fingerprint" ]]; then
		die "this cluster was deployed with other secrets than $secrets; make cluster-down, then make cluster-up"
	fi
	# The database's volume: a directory on the node, owned by the database's uid (hostPath volumes
	# get no fsGroup).
	install -d -o 999 -g 999 -m 0700 "$STATE_DIR/volumes/postgresql"
	# The backups' volume (deploy/overlays/local/backups-volume.yaml), written by the backup image's uid.
	install -d -o 999 -g 999 -m 0700 "$STATE_DIR/volumes/backups"
	# A first-apply Job that failed (an earlier start that did not finish) is made again by this apply.
	local job
	for job in $(kubectl -n platform get jobs -o jsonpath='{range .items[?(@.status.failed)]}{.metadata.name}{"\n"}{end}' 2>/dev/null); do
		if [[ $job == *-migrate || $job == auth-service-clients ]]; then
			log "deleting failed Job $job, to run it again"
			kubectl -n platform delete job "$job" --wait=true >/dev/null
		fi
	done
	platform_overlay_apply "$OVERLAY"
}

started=$(date +%s)
images_build_and_load
apply_gateway_definitions
apply_overlay
platform_monitoring_apply "$REPO/deploy/monitoring/local"
platform_wait
(cd "$REPO" && platform_idle_colors_scale_down --kubeconfig "$KUBECONFIG")
log "platform deployed in $(($(date +%s) - started))s"
kubectl -n platform get deployments,services
cat <<EOF
export KUBECONFIG=$KUBECONFIG_ADMIN   # API server $API_SERVER
# Services from this machine: http://<ClusterIP> with Host: <service>.platform.svc.cluster.local
EOF
