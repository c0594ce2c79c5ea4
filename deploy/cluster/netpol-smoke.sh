#!/usr/bin/env bash
# Proves the running local cluster enforces NetworkPolicies, in a namespace of its own: client A
# reaches the server until a default-deny policy stops it, while the kubelet's readiness probes
# keep passing; an allow policy opens exactly that flow, by pod label and by port, also through
# the ClusterIP Service; egress policies are enforced too; traffic from the node is always
# admitted, traffic from the host is judged by the address it has on the veth. Prints how long
# each policy took to take effect. Leaves nothing behind in the cluster.
# Traffic "from a pod" is curl run in that pod's network namespace, entered through one of its
# processes: the packets leave from the pod's address and interface as the pod's own would.
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "netpol-smoke.sh needs root: it enters the pods' network namespaces"
export KUBECONFIG=$KUBECONFIG_ADMIN
kubectl() { "$BIN_DIR/kubectl" "$@"; }
ns=netpol-smoke
trap 'kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true' EXIT
step() { printf '\n== %s\n' "$*"; }

kubectl get --raw /readyz >/dev/null || die "no API server at $API_SERVER; run deploy/cluster/up.sh"
daemon_running kube-router || die "kube-router is not running on the node; run deploy/cluster/up.sh"
wait_for "namespace $ns to be gone" 60 2 bash -c "! '$BIN_DIR/kubectl' get namespace $ns" || die "namespace $ns is stuck"

declare -A pod_pids
find_pod_pid() { # find_pod_pid POD: a process of the pod; every container of a pod shares its network namespace
	local uid procs pid=
	uid=$(kubectl -n "$ns" get pod "$1" -o jsonpath='{.metadata.uid}')
	while read -r procs; do
		read -r pid <"$procs" && break
	done < <(find "/sys/fs/cgroup/pids/$CGROUP_NAME/kubepods" -path "*/pod$uid/*" -name cgroup.procs)
	[[ -n $pid ]] || die "no process of pod $1 under cgroup $CGROUP_NAME/kubepods"
	pod_pids[$1]=$pid
}
# reach FROM URL: prints open, refused (rejected or reset) or timeout (no answer in 2 s). FROM is
# a pod of the namespace, "node" (a process of the node) or "host" (this machine, through the veth).
reach() {
	local from=$1 url=$2 code=0
	local curl=(curl -s -o /dev/null --connect-timeout 2 --max-time 3 "$url")
	case $from in
	host) "${curl[@]}" || code=$? ;;
	node) in_node "${curl[@]}" || code=$? ;;
	*) nsenter --net="/proc/${pod_pids[$from]}/ns/net" -- "${curl[@]}" || code=$? ;;
	esac
	case $code in
	0) echo open ;;
	7) echo refused ;;
	28) echo timeout ;;
	*) echo "curl-exit-$code" ;;
	esac
}
timings=()
# expect FROM URL WANT [WHAT]: polls until the flow is WANT (at most 200 tries, 15 s) and prints
# how long after the last policy change that was seen, and at which try (at the first, the policy
# had taken effect before); WHAT names the flow in the summary of timings.
expect() {
	local from=$1 url=$2 want=$3 what=${4:-} got try elapsed
	for ((try = 1; try <= 200; try++)); do
		got=$(reach "$from" "$url")
		[[ $got == "$want" ]] && break
		sleep 0.05
	done
	elapsed=$((($(date +%s%N) - changed_at) / 1000000))
	printf '  %-9s -> %-28s %-8s %5s ms after the last policy change, try %s\n' "$from" "$url" "$got" "$elapsed" "$try"
	[[ $got == "$want" ]] || die "$from -> $url is $got, expected $want"
	[[ -z $what ]] || timings+=("$(printf '%-52s %5s ms, try %s' "$what" "$elapsed" "$try")")
}
policy() { # policy MANIFEST_ON_STDIN: applies it and notes the time for expect
	kubectl apply -f - >/dev/null
	changed_at=$(date +%s%N)
}
unpolicy() { # unpolicy NAME...: deletes them and notes the time for expect
	kubectl -n "$ns" delete networkpolicy "$@" --wait=true >/dev/null
	changed_at=$(date +%s%N)
}
probe_failures() { # the server's failed probes, as the kubelet reports them in events
	kubectl -n "$ns" get events --field-selector "involvedObject.name=$server,reason=Unhealthy" \
		-o jsonpath='{range .items[*]}{.count}{"\n"}{end}' | awk '{n += $1} END {print n + 0}'
}
server_ready_without_new_probe_failures() {
	local ready failures
	ready=$(kubectl -n "$ns" get pod "$server" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
	failures=$(($(probe_failures) - probe_failures_before))
	echo "  server pod Ready=$ready, $failures failed probes since the policies began"
	[[ $ready == True && $failures == 0 ]] || die "the kubelet's readiness probes of the server failed"
}

step "A namespace of its own: the server behind a ClusterIP Service, clients A and C"
kubectl apply -f "$CLUSTER_DIR/netpol-smoke/workload.yaml"
kubectl -n "$ns" rollout status deployment/server --timeout=120s
kubectl -n "$ns" wait --for=condition=Ready pod/client-a pod/client-c --timeout=120s
kubectl -n "$ns" get pods -o wide
server=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=server -o jsonpath='{.items[0].metadata.name}')
server_url=http://$(kubectl -n "$ns" get pod "$server" -o jsonpath='{.status.podIP}'):8080/
service_url=http://$(kubectl -n "$ns" get service server -o jsonpath='{.spec.clusterIP}')/
client_c_url=http://$(kubectl -n "$ns" get pod client-c -o jsonpath='{.status.podIP}'):8080/
nobody_url=http://$(kubectl -n "$ns" get service nobody -o jsonpath='{.spec.clusterIP}')/
find_pod_pid client-a
find_pod_pid client-c
probe_failures_before=$(probe_failures)
changed_at=$(date +%s%N)

step "(1) No policy: every flow is open"
expect client-a "$server_url" open
expect client-c "$server_url" open
expect client-a "$service_url" open
expect host "$service_url" open
echo "  a Service without endpoints refuses at once (no wait for a timeout):"
expect client-a "$nobody_url" refused
expect host "$nobody_url" refused

step "(2) Default deny of ingress: A cannot reach the server; the node still can, so probes pass"
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: $ns}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
expect client-a "$server_url" refused "default deny ingress: A -> server closed"
expect client-a "$service_url" refused
expect client-c "$server_url" refused
expect node "$server_url" open
expect node "$service_url" open
expect host "$service_url" refused
sleep 6 # three readiness periods of the server
server_ready_without_new_probe_failures

step "(3a) Allow from role=a on port 9090 only: port 8080 stays closed"
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-server-from-a, namespace: $ns}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: server}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {netpol-smoke/role: a}
      ports: [{protocol: TCP, port: 9090}]
EOF
sleep 2 # a policy that opened 8080 would have done so by now
expect client-a "$server_url" refused

step "(3b) Allow from role=a on port 8080: exactly A -> server opens, directly and through the Service"
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-server-from-a, namespace: $ns}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: server}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {netpol-smoke/role: a}
      ports: [{protocol: TCP, port: 8080}]
EOF
expect client-a "$server_url" open "allow by label and port: A -> server open"
expect client-a "$service_url" open
expect client-c "$server_url" refused
expect client-c "$service_url" refused
expect client-a "$client_c_url" refused
expect host "$service_url" refused

step "(3c) Traffic from the host: after kube-proxy's DNAT, before its masquerade"
# kube-proxy masquerades what reaches a ClusterIP from outside the pod range, so the pod sees the
# bridge address; but policies are matched in the filter table, before that source rewrite.
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-server-from-node-bridge, namespace: $ns}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: server}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: $POD_GATEWAY/32}}]
      ports: [{protocol: TCP, port: 8080}]
EOF
sleep 2
echo "  with an ipBlock $POD_GATEWAY/32 (the bridge address the pod sees as the source):"
expect host "$service_url" refused
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-server-from-host, namespace: $ns}
spec:
  podSelector:
    matchLabels: {app.kubernetes.io/name: server}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: $HOST_IP/32}}]
      ports: [{protocol: TCP, port: 8080}]
EOF
echo "  with an ipBlock $HOST_IP/32 (the host's end of the veth):"
expect host "$service_url" open "allow by ipBlock: host -> Service open"
service_ip=${service_url#http://}
service_ip=${service_ip%/}
echo "  the host's connection in the node's conntrack table (original, then reply direction):"
in_node conntrack -L -p tcp --orig-src "$HOST_IP" --orig-dst "$service_ip" 2>/dev/null | head -n 1 | sed 's/^/    /'

step "(4) Egress: with no ingress policy left, denying A's egress closes A -> server"
unpolicy default-deny-ingress allow-server-from-a allow-server-from-node-bridge allow-server-from-host
expect client-a "$server_url" open "policies deleted: A -> server open again"
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress-a, namespace: $ns}
spec:
  podSelector:
    matchLabels: {netpol-smoke/role: a}
  policyTypes: [Egress]
EOF
expect client-a "$server_url" refused "deny egress of A: A -> server closed"
expect client-a "$service_url" refused
expect client-c "$server_url" open

step "(4b) Allow A's egress to the server on 8080: only that flow opens"
policy <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-egress-a-to-server, namespace: $ns}
spec:
  podSelector:
    matchLabels: {netpol-smoke/role: a}
  policyTypes: [Egress]
  egress:
    - to:
        - podSelector:
            matchLabels: {app.kubernetes.io/name: server}
      ports: [{protocol: TCP, port: 8080}]
EOF
expect client-a "$server_url" open "allow egress by label and port: A -> server open"
expect client-a "$service_url" open
expect client-a "$client_c_url" refused
server_ready_without_new_probe_failures

step "How long each policy change took to be enforced"
printf '  %s\n' "${timings[@]}"

step "cleaning up"
kubectl delete namespace "$ns" --timeout=120s
trap - EXIT
echo "netpol-smoke: all checks passed"
