#!/usr/bin/env bash
# Proves a running local cluster works end to end, from the host through the printed KUBECONFIG:
# a 2-replica Deployment behind a ClusterIP Service answers inside the node, its name resolves
# through CoreDNS, restricted Pod Security refuses a privileged pod and admits a restricted one,
# kubectl top has numbers, and a deleted pod is replaced. Leaves nothing behind in the cluster.
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

export KUBECONFIG=$KUBECONFIG_ADMIN
kubectl() { "$BIN_DIR/kubectl" "$@"; }
ns=cluster-smoke
manifests=$CLUSTER_DIR/smoke
trap 'kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true' EXIT
step() { printf '\n== %s\n' "$*"; }

kubectl get --raw /readyz >/dev/null || die "no API server at $API_SERVER; run deploy/cluster/up.sh"
# The namespace from an interrupted run may still be terminating.
wait_for "namespace $ns to be gone" 60 2 bash -c "! '$BIN_DIR/kubectl' get namespace $ns" || die "namespace $ns is stuck"

step "Deployment of 2 replicas and a ClusterIP Service"
kubectl apply -f "$manifests/hello.yaml"
kubectl -n "$ns" rollout status deployment/hello --timeout=120s
kubectl -n "$ns" get pods -o wide
cluster_ip=$(kubectl -n "$ns" get service hello -o jsonpath='{.spec.clusterIP}')

step "The ClusterIP $cluster_ip answers inside the node, from both replicas"
wait_for "endpoints of hello" 30 1 in_node curl -sf --max-time 2 "http://$cluster_ip/"
answers=$(for _ in $(seq 20); do in_node curl -sf --max-time 2 "http://$cluster_ip/"; done | sort | uniq -c)
echo "$answers"
[[ $(wc -l <<<"$answers") == 2 ]] || die "expected answers from 2 replicas through $cluster_ip"

step "CoreDNS resolves hello.$ns.svc.$CLUSTER_DOMAIN"
resolved=$(in_node dig +short +time=2 +tries=2 "@$CLUSTER_DNS_IP" "hello.$ns.svc.$CLUSTER_DOMAIN" A)
echo "hello.$ns.svc.$CLUSTER_DOMAIN -> $resolved"
[[ $resolved == "$cluster_ip" ]] || die "DNS gave '$resolved', the Service has $cluster_ip"

step "Restricted Pod Security refuses a privileged pod"
if refusal=$(kubectl apply -f "$manifests/privileged-pod.yaml" 2>&1); then
	die "a privileged pod was admitted into $ns"
fi
echo "$refusal"
grep -q 'violates PodSecurity "restricted' <<<"$refusal" || die "the privileged pod failed for another reason"

step "Restricted Pod Security admits a restricted pod"
kubectl apply -f "$manifests/restricted-pod.yaml"
kubectl -n "$ns" wait --for=condition=Ready pod/restricted --timeout=60s

step "kubectl top has numbers"
wait_for "pod metrics in $ns" 40 3 bash -c "'$BIN_DIR/kubectl' -n $ns top pods --no-headers | grep -q hello" ||
	die "metrics-server reports no pod metrics"
kubectl top nodes
kubectl -n "$ns" top pods

step "A deleted pod is replaced"
victim=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=hello -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$ns" delete pod "$victim" --wait=true --timeout=60s
replaced() {
	local names
	names=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=hello \
		--field-selector=status.phase=Running -o jsonpath='{.items[*].metadata.name}')
	[[ $(wc -w <<<"$names") == 2 && " $names " != *" $victim "* ]] &&
		kubectl -n "$ns" wait --for=condition=Ready pod -l app.kubernetes.io/name=hello --timeout=1s
}
wait_for "a replacement for $victim" 60 1 replaced || die "$victim was not replaced"
kubectl -n "$ns" get pods -l app.kubernetes.io/name=hello

step "cleaning up"
kubectl delete namespace "$ns" --timeout=120s
trap - EXIT
echo "smoke: all checks passed"
