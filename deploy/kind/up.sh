#!/usr/bin/env bash
# The platform on a kind cluster, the way deploy/README.md ("Deploy to kind") tells an operator, for
# the kind end-to-end workflow (.github/workflows/kind.yml) and for a machine with Docker, kind,
# kubectl and Helm:
#
#   deploy/kind/up.sh            # then: CLUSTER_TEST_KIND=platform make cluster-test (as root)
#   kind delete cluster --name platform
#
# The cluster (deploy/overlays/kind/cluster.yaml), Envoy Gateway and the GatewayClass the platform's
# Gateway names, metrics-server, the platform's image and the backup image built here and loaded into
# the nodes, Prometheus, kube-state-metrics and Jaeger (deploy/monitoring/base), the kind overlay's
# secrets made once and the overlay applied, the first apply's Jobs waited for, the idle colors scaled
# to zero; and a route from this machine to the cluster's Services through the control-plane node,
# so that clients here reach them as through a load balancer (the cluster tests, k6). Safe to run
# again. Env: KIND_CLUSTER (default platform), PYTHON (the virtual environment's python).
set -euo pipefail
shopt -s inherit_errexit
REPO=$(cd "$(dirname "$0")/../.." && pwd)
KIND_CLUSTER=${KIND_CLUSTER:-platform}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
ENVOY_GATEWAY_VERSION=v1.9.1
METRICS_SERVER_VERSION=v0.8.0
# kind's default Service subnet, written down in deploy/overlays/kind/cluster.yaml.
SERVICE_CIDR=10.96.0.0/16
SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
log() { printf '%s kind: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
kubectl() { command kubectl --context "kind-$KIND_CLUSTER" "$@"; }
# shellcheck source=../platform-steps.sh disable=SC1091 # followed with shellcheck -x; checked on its own
source "$REPO/deploy/platform-steps.sh"

for tool in docker kind kubectl helm age-keygen; do
	command -v "$tool" >/dev/null || die "needs $tool on PATH"
done

started=$(date +%s)
if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
	log "creating kind cluster $KIND_CLUSTER"
	kind create cluster --name "$KIND_CLUSTER" --config "$REPO/deploy/overlays/kind/cluster.yaml" --wait 180s
fi
node=$(docker inspect --format '{{ .NetworkSettings.Networks.kind.IPAddress }}' "$KIND_CLUSTER-control-plane")
$SUDO ip route replace "$SERVICE_CIDR" via "$node" || die "could not route $SERVICE_CIDR via the control-plane node $node"
log "Services ($SERVICE_CIDR) routed via the control-plane node $node"

log "Envoy Gateway $ENVOY_GATEWAY_VERSION (its chart brings the Gateway API CRDs)"
helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
	--kube-context "kind-$KIND_CLUSTER" --namespace envoy-gateway-system --create-namespace --wait --timeout 10m >/dev/null
kubectl apply --server-side --field-manager=platform -f "$REPO/deploy/gateway/gatewayclass.yaml" >/dev/null

log "metrics-server $METRICS_SERVER_VERSION (kind's kubelets have self-signed certificates)"
kubectl apply --server-side --field-manager=platform \
	-f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER_VERSION/components.yaml" >/dev/null
if ! kubectl -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q kubelet-insecure-tls; then
	kubectl -n kube-system patch deployment metrics-server --type=json \
		-p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]' >/dev/null
fi

KIND_CLUSTER=$KIND_CLUSTER PYTHON=$PYTHON "$REPO/deploy/kind/images.sh" app platform-app:dev dev
KIND_CLUSTER=$KIND_CLUSTER "$REPO/deploy/kind/images.sh" backup

(cd "$REPO/deploy/overlays/kind" && { [[ -f secrets/backup-identity.txt ]] || ./make-secrets.sh; })
platform_overlay_apply "$REPO/deploy/overlays/kind"
platform_monitoring_apply "$REPO/deploy/monitoring/base"
platform_wait
(cd "$REPO" && platform_idle_colors_scale_down --context "kind-$KIND_CLUSTER")
log "platform deployed on kind in $(($(date +%s) - started))s"
kubectl -n platform get deployments,services
