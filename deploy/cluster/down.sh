#!/usr/bin/env bash
# Removes everything up.sh made: processes, pod and daemon mounts, cgroups, the node's network
# namespace (kube-router's chains and ipsets in it first) and veth, the host firewall chain, and
# the kernel settings kubelet changed. Safe to run twice and after a failed start. Keeps the
# binary cache and, unless --purge, the state dir (certificates, etcd data, images), so the next
# up.sh is fast.
# usage: down.sh [--purge]
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

purge=false
case ${1:-} in
--purge) purge=true ;;
"") ;;
*) die "usage: down.sh [--purge]" ;;
esac
[[ $(id -u) == 0 ]] || die "down.sh needs root"

# Every process the cluster started, and everything they started, is in our cgroup tree:
# daemons and shims under system/, pods under kubepods/.
cluster_pids() { # cluster_pids [SUBTREE]
	local root=/sys/fs/cgroup/pids/$CGROUP_NAME${1:+/$1}
	[[ -d $root ]] || return 0
	find "$root" -name cgroup.procs -exec cat {} + | sort -un
}
kill_tree() { # kill_tree [SUBTREE]: SIGKILL until empty, bounded
	local pids i
	for ((i = 0; i < 20; i++)); do
		mapfile -t pids < <(cluster_pids "$@")
		((${#pids[@]})) || return 0
		log "killing what is left in cgroup $CGROUP_NAME/${1:-}: ${pids[*]}"
		kill -KILL "${pids[@]}" 2>/dev/null || true
		sleep 0.5
	done
	log "warning: processes still in cgroup $CGROUP_NAME/${1:-}: $(cluster_pids "$@" | tr '\n' ' ')"
}

shopt -s nullglob
# The kubelet first, so it restarts no pod; then the pods, so no watch holds up the API
# server's shutdown; then the control plane and containerd; then the shims.
stop_daemons kubelet
kill_tree kubepods
stop_daemons kube-router kube-proxy kube-scheduler kube-controller-manager kube-apiserver containerd
stop_daemons etcd
kill_tree
# A killed shim leaves its socket in /run/containerd/s, a directory every containerd on the host
# shares; the name is sha256(<containerd socket>/<namespace>/<sandbox or task id>), so remove ours.
containerd_state=$RUN_DIR/containerd/state
for bundle in "$containerd_state"/io.containerd.grpc.v1.cri/sandboxes/* "$containerd_state"/io.containerd.runtime.v2.task/k8s.io/*; do
	socket_digest=$(printf '%s' "$RUN_DIR/containerd/containerd.sock/k8s.io/$(basename "$bundle")" | sha256sum | cut -d' ' -f1)
	rm -f "/run/containerd/s/$socket_digest"
done

# Mounts: pod volumes, netns bind mounts, overlay rootfs, shm, the kubelet's rshared root;
# deepest first, and again while unmounting one uncovers another.
state_mounts() { awk '{print $5}' /proc/self/mountinfo | grep -F "$STATE_DIR/" | sort -r || true; }
for ((i = 0; i < 5; i++)); do
	mounts=$(state_mounts)
	[[ -z $mounts ]] && break
	while read -r mount_point; do
		umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
	done <<<"$mounts"
done
[[ -z $(state_mounts) ]] || log "warning: mounts still under $STATE_DIR: $(state_mounts | tr '\n' ' ')"

# cgroups, deepest first, in every hierarchy.
for hierarchy in $CGROUP_HIERARCHIES; do
	root=/sys/fs/cgroup/$hierarchy/$CGROUP_NAME
	[[ -d $root ]] || continue
	find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || log "warning: could not remove cgroups under $root"
done

# kube-router's chains and ipsets in the node would go with the namespace, but not while some
# process still holds it, so they are removed first: the jumps from the built-in chains, its
# chains (flushed before deleted, as they jump to one another), then its ipsets (TMP- ones are
# left by an interrupted ipset restore).
remove_network_policy_rules() {
	local filter chains sets set
	filter=$(in_node iptables-save -t filter) || return 0
	mapfile -t chains < <(awk '/^:(KUBE-ROUTER-|KUBE-POD-FW-|KUBE-NWPLCY-)/ {print substr($1, 2)}' <<<"$filter")
	if ((${#chains[@]})); then
		{
			echo '*filter'
			grep -E '^-A (INPUT|FORWARD|OUTPUT) .*-j KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)$' <<<"$filter" | sed 's/^-A /-D /' || true
			printf -- '-F %s\n' "${chains[@]}"
			printf -- '-X %s\n' "${chains[@]}"
			echo COMMIT
		} | in_node iptables-restore --noflush || log "warning: could not remove kube-router's chains ${chains[*]}"
	fi
	command -v ipset >/dev/null || return 0
	mapfile -t sets < <(in_node ipset list -n | grep -E '^(KUBE-SRC-|KUBE-DST-|TMP-)' || true)
	for set in "${sets[@]}"; do
		in_node ipset destroy "$set" || log "warning: could not destroy ipset $set"
	done
	((${#chains[@]} + ${#sets[@]} == 0)) || log "removed kube-router's ${#chains[@]} chains and ${#sets[@]} ipsets"
}

# The network: the namespace (its veth end, bridge and kube-proxy's rules go with it), the host
# end of the veth, and the host's firewall chain.
if [[ -e $NETNS_PATH ]]; then
	remove_network_policy_rules
	ip netns delete "$NETNS" || log "warning: could not delete network namespace $NETNS"
fi
if ip link show "$VETH_HOST" >/dev/null 2>&1; then ip link delete "$VETH_HOST"; fi
if command -v iptables >/dev/null; then
	for chain in INPUT FORWARD; do
		for ((i = 0; i < 10; i++)); do
			iptables -D "$chain" -i "$VETH_HOST" -j "$HOST_CHAIN" 2>/dev/null || break
		done
	done
	iptables -F "$HOST_CHAIN" 2>/dev/null || true
	iptables -X "$HOST_CHAIN" 2>/dev/null || true
fi

# Kernel settings the kubelet changed, and host paths it or containerd created.
if [[ -s $STATE_DIR/host-sysctls ]]; then
	mapfile -t saved_sysctls <"$STATE_DIR/host-sysctls"
	sysctl -q -w "${saved_sysctls[@]}" || log "warning: could not restore ${saved_sysctls[*]}"
	rm -f "$STATE_DIR/host-sysctls"
fi
for link in /var/log/containers/*.log; do
	[[ $(readlink "$link") == "$STATE_DIR/"* ]] && rm -f "$link"
done
if [[ -f $STATE_DIR/created-paths ]]; then
	while read -r path; do
		case $path in
		/run/containerd) rmdir /run/containerd/s /run/containerd 2>/dev/null || true ;;
		*) rm -rf "$path" ;;
		esac
	done <"$STATE_DIR/created-paths"
	rm -f "$STATE_DIR/created-paths"
fi

if $purge; then
	log "removing $STATE_DIR"
	rm -rf "$STATE_DIR"
fi
log "cluster is down"
