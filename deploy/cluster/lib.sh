# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this file
# Shared settings and helpers of the local single-node cluster, sourced by its scripts.
# The node lives in a network namespace of its own, joined to the host by one veth pair on a
# private /30; pods and Services use private ranges that exist only inside that namespace.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Pinned versions: each is also pinned by the go.mod of its tool module under tools/.
KUBERNETES_VERSION=v1.34.4
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:v1.14.3
METRICS_SERVER_IMAGE=registry.k8s.io/metrics-server/metrics-server:v0.8.0

# Network layout.
NODE_NAME=platform-node
NETNS=platform-cluster
NETNS_PATH=/var/run/netns/$NETNS
VETH_HOST=pcl-host
VETH_NODE=pcl-node
HOST_IP=10.213.0.1
NODE_IP=10.213.0.2
VETH_PREFIX=30
SERVICE_LINK=pcl-svc
POD_CIDR=10.214.0.0/24
POD_GATEWAY=10.214.0.1
POD_BRIDGE=pcl0
SERVICE_CIDR=10.215.0.0/24
KUBERNETES_SERVICE_IP=10.215.0.1
CLUSTER_DNS_IP=10.215.0.10
CLUSTER_DOMAIN=cluster.local
API_SERVER=https://$NODE_IP:6443
HOST_CHAIN=PLATFORM-CLUSTER

# Where things live: binaries in a cache keyed by the pinned versions, state outside the repository.
CLUSTER_CACHE=${PLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/platform}/cluster
STATE_DIR=${PLATFORM_CLUSTER_STATE:-/var/lib/platform-cluster}
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/log
PKI_DIR=$STATE_DIR/pki
KUBECONFIG_ADMIN=$STATE_DIR/admin.kubeconfig
# Every cgroup the cluster makes (daemons under system/, pods under kubepods/) sits below this one.
CGROUP_NAME=platform-cluster
CGROUP_CONTROLLERS="cpu cpuacct cpuset memory devices freezer blkio pids systemd"
# runc also mirrors each container's cgroup into the (controller-less) cgroup2 mount.
CGROUP_HIERARCHIES="$CGROUP_CONTROLLERS unified"

# The cache key covers every pin: the tool modules (go.mod, go.sum, sources) and the image packer.
cluster_cache_key() {
	local digest
	digest=$(cd "$CLUSTER_DIR" && find tools pack-image.sh -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name pack-image.sh \) \
		| LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
	echo "k8s-$KUBERNETES_VERSION-$digest"
}
CACHE_KEY_DIR=$CLUSTER_CACHE/$(cluster_cache_key)
BIN_DIR=$CACHE_KEY_DIR/bin
CNI_BIN_DIR=$BIN_DIR/cni
IMAGE_DIR=$CACHE_KEY_DIR/images

CLUSTER_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
etcd containerd containerd-shim-runc-v2 ctr coredns metrics-server kube-router hello pause
cni/bridge cni/host-local cni/loopback cni/portmap"
CLUSTER_IMAGES="pause coredns metrics-server hello"

log() { printf '%s cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command inside the node's network namespace. nsenter keeps the host's mount namespace,
# so the cgroup hierarchies and the kubelet's mounts stay visible ('ip netns exec' remounts /sys).
in_node() { nsenter --net="$NETNS_PATH" -- "$@"; }

# wait_for DESCRIPTION TRIES SECONDS_BETWEEN COMMAND...: bounded in count and so in time.
wait_for() {
	local what=$1 tries=$2 pause=$3 i
	shift 3
	for ((i = 1; i <= tries; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep "$pause"
	done
	log "gave up waiting for $what after $tries tries, ${pause}s apart"
	return 1
}

daemon_running() { # daemon_running NAME: the recorded pid is alive and still runs our binary
	local pid
	pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 1
	[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$BIN_DIR/$1" ]]
}
stop_daemons() { # stop_daemons NAME...: TERM them all, wait up to 15 s, then KILL what still runs
	local name pid pids=() i alive
	for name; do
		if daemon_running "$name"; then
			pid=$(cat "$RUN_DIR/$name.pid")
			log "stopping $name (pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
		rm -f "$RUN_DIR/$name.pid"
	done
	for ((i = 0; i < 30; i++)); do
		alive=0
		for pid in "${pids[@]}"; do [[ -e /proc/$pid ]] && alive=1; done
		((alive)) || return 0
		sleep 0.5
	done
	kill -KILL "${pids[@]}" 2>/dev/null || true
}

kubectl_admin() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
# ctr warns on every call that cgroup v1 is deprecated: those lines are dropped.
ctr_node() {
	{ "$BIN_DIR/ctr" --address "$RUN_DIR/containerd/containerd.sock" --namespace k8s.io "$@" 2>&1 1>&3 3>&- |
		sed '/DEPRECATION: The support for cgroup v1/d' >&2; } 3>&1
}
