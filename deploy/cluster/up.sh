#!/usr/bin/env bash
# Starts the local single-node Kubernetes cluster: etcd, the control plane, containerd, kubelet,
# kube-proxy and kube-router's network policy controller, all inside the network namespace
# $NETNS, reachable from the host only at $API_SERVER; then CoreDNS and metrics-server as pods.
# Idempotent: what already runs is kept, and it is safe after a failed start (down.sh removes
# everything it makes).
# Env: PLATFORM_CACHE (binary cache root), PLATFORM_CLUSTER_STATE (state, default /var/lib/platform-cluster).
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "up.sh needs root: it makes a network namespace, cgroups and mounts"
started=$(date +%s)

install_packages() {
	local wanted=(iptables ipset conntrack runc jq openssl gcc libc6-dev curl bind9-dnsutils) missing=() package
	for package in "${wanted[@]}"; do
		dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
	done
	((${#missing[@]})) || return 0
	log "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Host paths that kubelet and containerd insist on whatever their configuration says. Each one
# that did not exist before is recorded, so down.sh removes exactly those.
record_created_paths() {
	local path
	# /var/lib/kubelet/device-plugins is fixed in the kubelet whatever its --root-dir.
	for path in /var/log/containers /var/lib/cni /var/lib/kubelet /run/containerd; do
		# One that exists was there before, or was made and recorded by an earlier start.
		[[ -e $path ]] || echo "$path" >>"$STATE_DIR/created-paths"
	done
}

setup_network() {
	[[ -e $NETNS_PATH ]] || ip netns add "$NETNS"
	if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
		ip link add "$VETH_HOST" type veth peer name "$VETH_NODE" netns "$NETNS"
	fi
	ip addr replace "$HOST_IP/$VETH_PREFIX" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	# This machine reaches Services as a client outside the cluster would reach a load balancer:
	# through the node, where kube-proxy picks a pod. It goes away with the veth.
	ip route replace "$SERVICE_CIDR" via "$NODE_IP" dev "$VETH_HOST"
	in_node ip link set lo up
	in_node ip addr replace "$NODE_IP/$VETH_PREFIX" dev "$VETH_NODE"
	in_node ip link set "$VETH_NODE" up
	# The node has no default route, so a Service IP needs a route of its own for the node's
	# processes to connect at all (kube-proxy then rewrites it to a pod). It points at a bridge
	# with no ports: a packet to an address no Service has goes nowhere.
	in_node ip link show "$SERVICE_LINK" >/dev/null 2>&1 || in_node ip link add "$SERVICE_LINK" type bridge
	in_node ip link set "$SERVICE_LINK" up
	in_node ip route replace "$SERVICE_CIDR" dev "$SERVICE_LINK"
	# These are per network namespace: forwarding and bridged traffic through iptables (kube-proxy's
	# Service rules) inside the node only; the host's own settings are not touched.
	in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
		net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.conf.all.route_localnet=1

	# The node may answer the host but never open a connection to it or through it.
	# Rules are only ever added (never flushed and rebuilt), so a rerun leaves no gap.
	iptables -N "$HOST_CHAIN" 2>/dev/null || true
	iptables -C "$HOST_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null ||
		iptables -I "$HOST_CHAIN" 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	iptables -C "$HOST_CHAIN" -j DROP 2>/dev/null || iptables -A "$HOST_CHAIN" -j DROP
	local chain
	for chain in INPUT FORWARD; do
		iptables -C "$chain" -i "$VETH_HOST" -j "$HOST_CHAIN" 2>/dev/null || iptables -I "$chain" 1 -i "$VETH_HOST" -j "$HOST_CHAIN"
	done
}

setup_cgroups() {
	local controller root
	for controller in $CGROUP_CONTROLLERS; do
		root=/sys/fs/cgroup/$controller
		[[ -d $root ]] || die "cgroup v1 hierarchy $controller is not mounted at $root; the kubelet runs on cgroup v1 here"
		mkdir -p "$root/$CGROUP_NAME/system"
		if [[ $controller == cpuset ]]; then # a cpuset cgroup takes no task until it has cpus and mems
			cat "$root/cpuset.cpus" >"$root/$CGROUP_NAME/cpuset.cpus"
			cat "$root/cpuset.mems" >"$root/$CGROUP_NAME/cpuset.mems"
			cat "$root/cpuset.cpus" >"$root/$CGROUP_NAME/system/cpuset.cpus"
			cat "$root/cpuset.mems" >"$root/$CGROUP_NAME/system/cpuset.mems"
		fi
	done
}

# --- certificates (openssl, EC P-256), made once and kept in $PKI_DIR --------------------------
new_ca() { # new_ca NAME CN
	[[ -s $PKI_DIR/$1.crt ]] && return
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj "/CN=$2" -keyout "$PKI_DIR/$1.key" -out "$PKI_DIR/$1.crt" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
new_cert() { # new_cert CA NAME SUBJECT USAGE [SUBJECT_ALT_NAMES]
	local ca=$1 name=$2 subject=$3 usage=$4 sans=${5:-}
	[[ -s $PKI_DIR/$name.crt ]] && return
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
		-keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -n $sans ]] && echo "subjectAltName=$sans"
	} >"$PKI_DIR/$name.ext"
	openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$PKI_DIR/$name.ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
	rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}
make_pki() {
	mkdir -p "$PKI_DIR"
	chmod 0700 "$PKI_DIR"
	new_ca ca platform-cluster-ca
	new_ca etcd-ca platform-cluster-etcd-ca
	new_ca front-proxy-ca platform-cluster-front-proxy-ca
	new_cert etcd-ca etcd-server /CN=etcd serverAuth,clientAuth IP:127.0.0.1,DNS:localhost
	new_cert etcd-ca apiserver-etcd-client /CN=kube-apiserver-etcd-client clientAuth
	new_cert ca apiserver /CN=kube-apiserver serverAuth \
		"IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
	new_cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	new_cert ca admin "/O=system:masters/CN=platform-admin" clientAuth
	new_cert ca controller-manager /CN=system:kube-controller-manager clientAuth
	new_cert ca scheduler /CN=system:kube-scheduler clientAuth
	new_cert ca kube-proxy /CN=system:kube-proxy clientAuth
	new_cert ca kube-router /CN=kube-router clientAuth
	new_cert ca kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
	new_cert ca kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
	new_cert front-proxy-ca front-proxy-client /CN=front-proxy-client clientAuth
	if [[ ! -s $PKI_DIR/service-account.key ]]; then
		openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/service-account.key"
		openssl ec -in "$PKI_DIR/service-account.key" -pubout -out "$PKI_DIR/service-account.pub" 2>/dev/null
	fi
	chmod 0600 "$PKI_DIR"/*.key
}

# write_file PATH < CONTENT: replaces the file only when the content differs, since kube-proxy
# exits when its configuration file changes and a restart should keep what runs.
write_file() {
	local content
	content=$(cat)
	[[ -f $1 && $(cat "$1") == "$content" ]] && return
	printf '%s\n' "$content" >"$1.new"
	chmod 0600 "$1.new"
	mv "$1.new" "$1"
}

write_kubeconfig() { # write_kubeconfig NAME CERT_NAME: credentials embedded, so the file can be copied
	write_file "$STATE_DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: platform-cluster
  cluster:
    server: $API_SERVER
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$2.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$2.key")
contexts:
- name: platform-cluster
  context: {cluster: platform-cluster, user: $1}
current-context: platform-cluster
EOF
}

write_configs() {
	local name
	for name in admin controller-manager scheduler kube-proxy kube-router; do write_kubeconfig "$name" "$name"; done
	write_kubeconfig kubelet kubelet-client
	mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/networks"

	write_file "$STATE_DIR/cni/net.d/10-platform.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "platform",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE_DIR/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

	# containerd: a root, state, socket and runc root of its own, so it never meets another engine.
	write_file "$STATE_DIR/containerd.toml" <<EOF
version = 3
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd/state"
# NRI would open a socket under /var/run/nri; the cluster does not use it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "$RUN_DIR/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd-opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  # This VM refuses a negative oom_score_adj (no CAP_SYS_RESOURCE): clamp to containerd's own.
  restrict_oom_score_adj = true
  # Pod network namespaces are bind-mounted under the state dir, not in the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$STATE_DIR/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
EOF

	write_file "$STATE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$RUN_DIR/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
# This VM has cgroup v1 only and no systemd: cgroupfs, every cgroup below /$CGROUP_NAME.
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_NAME
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: the kubelet cannot lower its oom_score_adj nor raise the nofile hard limit.
oomScoreAdj: 0
maxOpenFiles: 20000
clusterDNS: [$CLUSTER_DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
# The node has no upstream resolver: pods get only the cluster DNS.
resolvConf: ""
podLogsDir: $STATE_DIR/pod-logs
volumePluginDir: $STATE_DIR/kubelet-plugins
kubeReserved: {cpu: 100m, memory: 256Mi}
serializeImagePulls: false
EOF

	write_file "$STATE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
nodePortAddresses: [primary]
# Leave the conntrack sysctls as they are: in a network namespace most are not kube-proxy's to set.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# --- daemons -------------------------------------------------------------------------------------
# config_changed NAME ARGS...: a file of the state dir among the arguments (a configuration,
# a certificate) is newer than the running daemon.
config_changed() {
	local pid_file=$RUN_DIR/$1.pid argument
	shift
	for argument; do
		[[ $argument == "$STATE_DIR"/* && -f $argument && $argument -nt $pid_file ]] && return 0
	done
	return 1
}
start_daemon() { # start_daemon NAME ARGS...: in the node netns, in cgroup /$CGROUP_NAME/system
	local name=$1
	shift
	if daemon_running "$name"; then
		if ! config_changed "$name" "$@"; then
			log "$name is running (pid $(cat "$RUN_DIR/$name.pid"))"
			return
		fi
		log "$name has a new configuration"
		stop_daemons "$name"
	fi
	log "starting $name (log: $LOG_DIR/$name.log)"
	# The inner shell joins the cgroups, then becomes the daemon: its $$ and "$@" are its own.
	# shellcheck disable=SC2016
	PATH="$BIN_DIR:$PATH" nsenter --net="$NETNS_PATH" -- setsid bash -c '
		for procs in /sys/fs/cgroup/*/"$1"/system/cgroup.procs; do echo $$ >"$procs"; done
		shift
		exec "$@"' _ "$CGROUP_NAME" "$BIN_DIR/$name" "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
	echo $! >"$RUN_DIR/$name.pid"
}

start_control_plane() {
	start_daemon etcd --name "$NODE_NAME" --data-dir "$STATE_DIR/etcd" \
		--listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
		--cert-file "$PKI_DIR/etcd-server.crt" --key-file "$PKI_DIR/etcd-server.key" \
		--client-cert-auth --trusted-ca-file "$PKI_DIR/etcd-ca.crt"
	wait_for "etcd health" 60 1 in_node curl -sf http://127.0.0.1:2381/health || die "etcd did not start; see $LOG_DIR/etcd.log"

	start_daemon kube-apiserver --advertise-address "$NODE_IP" --secure-port 6443 \
		--etcd-servers https://127.0.0.1:2379 --etcd-cafile "$PKI_DIR/etcd-ca.crt" \
		--etcd-certfile "$PKI_DIR/apiserver-etcd-client.crt" --etcd-keyfile "$PKI_DIR/apiserver-etcd-client.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--client-ca-file "$PKI_DIR/ca.crt" \
		--tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
		--kubelet-client-certificate "$PKI_DIR/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$PKI_DIR/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI_DIR/ca.crt" --kubelet-preferred-address-types InternalIP \
		--service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
		--service-account-key-file "$PKI_DIR/service-account.pub" \
		--service-account-signing-key-file "$PKI_DIR/service-account.key" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction,PodSecurity \
		--allow-privileged=true \
		--requestheader-client-ca-file "$PKI_DIR/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
		--requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
		--requestheader-extra-headers-prefix X-Remote-Extra- \
		--proxy-client-cert-file "$PKI_DIR/front-proxy-client.crt" --proxy-client-key-file "$PKI_DIR/front-proxy-client.key" \
		--enable-aggregator-routing=true --profiling=false
	wait_for "the API server" 90 1 kubectl_admin get --raw /readyz || die "kube-apiserver is not ready; see $LOG_DIR/kube-apiserver.log"

	start_daemon kube-controller-manager --kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE_DIR/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--cluster-signing-cert-file "$PKI_DIR/ca.crt" --cluster-signing-key-file "$PKI_DIR/ca.key" \
		--service-account-private-key-file "$PKI_DIR/service-account.key" --root-ca-file "$PKI_DIR/ca.crt" \
		--use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
		--cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false --profiling=false
	start_daemon kube-scheduler --kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
	mkdir -p "$RUN_DIR/containerd"
	start_daemon containerd --config "$STATE_DIR/containerd.toml"
	wait_for "containerd" 60 1 ctr_node version || die "containerd did not start; see $LOG_DIR/containerd.log"
	local image
	for image in $CLUSTER_IMAGES; do
		ctr_node images import --platform linux/amd64 "$IMAGE_DIR/$image.tar" >/dev/null 2>&1 ||
			die "could not import $IMAGE_DIR/$image.tar into containerd"
	done

	# kubelet tunes a few global kernel settings (panic on oops, overcommit, keyring sizes) at start;
	# keep the host's values once so down.sh can put them back.
	if [[ ! -s $STATE_DIR/host-sysctls ]]; then
		sysctl vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
			kernel.keys.root_maxkeys kernel.keys.root_maxbytes | sed 's/ = /=/' >"$STATE_DIR/host-sysctls"
	fi
	start_daemon kubelet --config "$STATE_DIR/kubelet.yaml" --kubeconfig "$STATE_DIR/kubelet.kubeconfig" \
		--root-dir "$STATE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
	start_daemon kube-proxy --config "$STATE_DIR/kube-proxy.yaml"
	wait_for "node $NODE_NAME to be Ready" 120 1 \
		kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s || die "the node is not Ready; see $LOG_DIR/kubelet.log"
}

# NetworkPolicies are enforced by kube-router's network policy controller alone (no routing, no
# service proxy: the bridge CNI and kube-proxy do those), in the node's filter table: it jumps
# from INPUT, FORWARD and OUTPUT to chains per local pod, with ipsets of the pods each policy
# selects. It reads its Node at start, so it starts once the node is registered. Its health
# server would listen on every address of the node, pprof included, so it is off; the first
# full sync is what up.sh waits for (it ends with the ACCEPT of traffic the policies allow).
# A sync that fails (the kernel can still hold an ipset it swaps as busy) is retried at the
# next change or the periodic full sync: every minute rather than every five.
# That ACCEPT comes before kube-proxy's REJECT of a Service without endpoints, so a pod's
# connection to one would hang until its timeout: a pod's packet still addressed to a Service IP
# after kube-proxy's DNAT is refused by routing instead (ICMP unreachable), at once, as before.
network_policy_synced() {
	daemon_running kube-router &&
		in_node iptables -w 5 -S KUBE-ROUTER-FORWARD | grep -q -- '--mark 0x20000/0x20000 -j ACCEPT'
}
start_network_policy() {
	[[ -n $(in_node ip rule show pref 1000) ]] ||
		in_node ip rule add pref 1000 iif "$POD_BRIDGE" to "$SERVICE_CIDR" unreachable
	kubectl_admin apply --server-side --force-conflicts -f "$CLUSTER_DIR/addons/kube-router.yaml" >/dev/null
	start_daemon kube-router --kubeconfig "$STATE_DIR/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
		--run-firewall=true --run-router=false --run-service-proxy=false \
		--service-cluster-ip-range "$SERVICE_CIDR" --health-port 0 --iptables-sync-period 1m --v=1
	wait_for "kube-router's first NetworkPolicy sync" 60 1 network_policy_synced ||
		die "NetworkPolicies are not enforced; see $LOG_DIR/kube-router.log"
}

cluster_dns_resolves() { # cluster_dns_resolves NAME: the cluster DNS gives NAME an address
	[[ -n $(in_node dig +short +time=2 +tries=1 "@$CLUSTER_DNS_IP" "$1" A) ]]
}

deploy_addons() {
	kubectl_admin apply --server-side --force-conflicts -f "$CLUSTER_DIR/addons/" >/dev/null
	kubectl_admin -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null ||
		die "CoreDNS is not available; kubectl -n kube-system describe pods -l k8s-app=kube-dns"
	wait_for "CoreDNS to resolve kubernetes.default" 30 2 cluster_dns_resolves "kubernetes.default.svc.$CLUSTER_DOMAIN" ||
		die "CoreDNS does not answer at $CLUSTER_DNS_IP"
	kubectl_admin -n kube-system rollout status deployment/metrics-server --timeout=180s >/dev/null ||
		die "metrics-server is not available; kubectl -n kube-system logs deploy/metrics-server"
	wait_for "kubectl top nodes" 60 3 kubectl_admin top nodes || die "no resource metrics from metrics-server"
}

install_packages
"$CLUSTER_DIR/build.sh"
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
chmod 0700 "$STATE_DIR"
record_created_paths
setup_network
setup_cgroups
make_pki
write_configs
start_control_plane
start_node
start_network_policy
deploy_addons
log "cluster is up in $(($(date +%s) - started))s"
cat <<EOF
export KUBECONFIG=$KUBECONFIG_ADMIN   # API server $API_SERVER
# inside the node: nsenter --net=$NETNS_PATH -- COMMAND
EOF
