#!/usr/bin/env bash
# Builds an image with the machine's Docker and loads it into the kind cluster's nodes, as
# deploy/cluster/images.sh does for the local cluster (the cluster tests call whichever runs):
#
#   deploy/kind/images.sh app IMAGE VERSION                 # the platform's image (make image), as VERSION
#   deploy/kind/images.sh derived IMAGE DIRECTORY FROM      # DIRECTORY's Dockerfile on FROM (ARG BASE)
#   deploy/kind/images.sh backup                            # platform/dr's image, platform-backup:dev
#
# Env: KIND_CLUSTER (default platform), PYTHON (for make image's wheel download).
set -euo pipefail
shopt -s inherit_errexit
REPO=$(cd "$(dirname "$0")/../.." && pwd)
KIND_CLUSTER=${KIND_CLUSTER:-platform}
usage() { echo "usage: images.sh app IMAGE VERSION | derived IMAGE DIRECTORY FROM | backup" >&2; exit 2; }

case ${1:-} in
app)
	(($# == 3)) || usage
	image=$2
	IMAGE=$image APP_VERSION=$3 PYTHON=${PYTHON:-python3} "$REPO/platform/containers/image.sh"
	;;
derived)
	(($# == 4)) || usage
	image=$2
	docker build --quiet --build-arg "BASE=$4" --tag "$image" "$3" >/dev/null
	;;
backup)
	(($# == 1)) || usage
	image=platform-backup:dev
	docker build --quiet --tag "$image" "$REPO/platform/dr" >/dev/null
	;;
*) usage ;;
esac
kind load docker-image "$image" --name "$KIND_CLUSTER" >&2
echo "$(date +%T) kind: $image loaded into the nodes of $KIND_CLUSTER" >&2
