#!/usr/bin/env bash
# Puts the platform's images into the running node's containerd, where pods find them with no
# registry (imagePullPolicy IfNotPresent):
#
#   deploy/cluster/images.sh app platform-app:dev dev     # the real image (platform/containers/image.sh), this tag and APP_VERSION
#   deploy/cluster/images.sh postgres                     # the PostgreSQL stand-in, as platform-local/postgres:15
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

usage() { die "usage: images.sh app IMAGE APP_VERSION | images.sh postgres"; }

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
	postgres) (($# == 1)) || usage ;;
	*) usage ;;
esac

eval "$("$REPO/platform/containers/engine.sh" up)"
if [[ $ENGINE_STARTED == 1 ]]; then
	trap '"$REPO/platform/containers/engine.sh" down' EXIT
fi
if [[ $1 == app ]]; then
	IMAGE=$2 APP_VERSION=$3 "$REPO/platform/containers/image.sh"
	load_image "$2"
else
	docker tag "$("$REPO/platform/containers/local-images.sh" postgres)" "$POSTGRES_IMAGE"
	load_image "$POSTGRES_IMAGE"
fi
