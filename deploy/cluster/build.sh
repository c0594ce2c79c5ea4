#!/usr/bin/env bash
# Builds every binary and image of the local cluster from pinned Go modules (and pause.c), once
# per machine, into $CLUSTER_CACHE/<key>/. A warm cache (all binaries, all images and a stamp
# of the key) builds nothing. A cold build takes about 20 to 30 minutes on two cores.
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

stamp=$CACHE_KEY_DIR/stamp
cache_is_warm() {
	[[ -f $stamp && $(cat "$stamp") == "$(basename "$CACHE_KEY_DIR")" ]] || return 1
	local name
	for name in $CLUSTER_BINARIES; do [[ -x $BIN_DIR/$name ]] || return 1; done
	for name in $CLUSTER_IMAGES; do [[ -s $IMAGE_DIR/$name.tar ]] || return 1; done
}
if cache_is_warm; then
	log "binaries and images are cached in $CACHE_KEY_DIR"
	exit 0
fi

command -v go >/dev/null || die "go is not installed; the cluster is built from Go modules"
command -v gcc >/dev/null || die "gcc is not installed; the pause image is built from pause.c"
command -v jq >/dev/null || die "jq is not installed; the image packer writes JSON with it"
rm -f "$stamp"
mkdir -p "$BIN_DIR" "$CNI_BIN_DIR" "$IMAGE_DIR"
started=$(date +%s)

# The modules' go.mod and go.sum are the pins: never let a build change them or a toolchain.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
tools=$CLUSTER_DIR/tools
go_build() { # go_build MODULE OUTPUT PACKAGE... (extra flags through GOFLAGS, extra -X through LDFLAGS_EXTRA)
	local module=$1 output=$2
	shift 2
	log "building $* (log: $CACHE_KEY_DIR/build.log)"
	(cd "$tools/$module" && nice -n 10 go build -trimpath -ldflags="-s -w ${LDFLAGS_EXTRA:-}" -o "$output" "$@") \
		>>"$CACHE_KEY_DIR/build.log" 2>&1 || die "go build of $* failed; see $CACHE_KEY_DIR/build.log"
}

# Kubernetes: the version variables are what `make` in the kubernetes tree would stamp in, so
# nodes and clients report v1.34.4 rather than v0.0.0-master.
minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
LDFLAGS_EXTRA="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION" \
	CGO_ENABLED=1 go_build kubernetes "$BIN_DIR/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
	k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl

export CGO_ENABLED=0
go_build etcd "$BIN_DIR/etcd" .
GOFLAGS="$GOFLAGS -tags=no_btrfs,no_devmapper,no_zfs" go_build containerd "$BIN_DIR/" \
	github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
	github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
go_build cni "$CNI_BIN_DIR/" \
	github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local \
	github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap
go_build coredns "$BIN_DIR/coredns" github.com/coredns/coredns
go_build metrics-server "$BIN_DIR/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server
# kube-router reports the version its go.mod pins and, for a reproducible binary, the time of
# that version's commit where its release build puts the build date.
kube_router=github.com/cloudnativelabs/kube-router/v2
read -r kube_router_version kube_router_time < <(cd "$tools/kube-router" &&
	go list -m -f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$kube_router")
LDFLAGS_EXTRA="-X $kube_router/pkg/version.Version=$kube_router_version -X $kube_router/pkg/version.BuildDate=$kube_router_time" \
	go_build kube-router "$BIN_DIR/kube-router" "$kube_router/cmd/kube-router"
go_build hello "$BIN_DIR/hello" .

# The pause container, from the C source that ships inside the pinned kubernetes module.
pause_source=$(cd "$tools/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
log "compiling $pause_source"
gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_IMAGE##*:}-$KUBERNETES_VERSION" -o "$BIN_DIR/pause" "$pause_source"
strip "$BIN_DIR/pause"

# Images: each a single static binary in an otherwise empty (FROM scratch) root filesystem.
pack() { # pack NAME BINARY REFERENCE ENTRYPOINT_JSON [USER]
	local name=$1 binary=$2 reference=$3 entrypoint=$4 user=${5:-} rootfs
	rootfs=$(mktemp -d)
	install -m 0755 "$BIN_DIR/$binary" "$rootfs/$binary"
	"$CLUSTER_DIR/pack-image.sh" "$rootfs" "$reference" "$IMAGE_DIR/$name.tar" "$entrypoint" "$user"
	rm -rf "$rootfs"
	log "packed $reference into $IMAGE_DIR/$name.tar"
}
pack pause pause "$PAUSE_IMAGE" '["/pause"]' 65535:65535
# CoreDNS runs as root with only NET_BIND_SERVICE (see addons/coredns.yaml): a capability
# added to a non-root container is not effective without file capabilities in the image.
pack coredns coredns "$COREDNS_IMAGE" '["/coredns"]'
pack metrics-server metrics-server "$METRICS_SERVER_IMAGE" '["/metrics-server"]' 65534:65534
pack hello hello platform.local/hello:1 '["/hello"]' 65532:65532

basename "$CACHE_KEY_DIR" >"$stamp"
log "built everything in $(($(date +%s) - started))s into $CACHE_KEY_DIR"
