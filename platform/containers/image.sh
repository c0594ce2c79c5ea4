#!/usr/bin/env bash
# Builds the platform's one image (`make image`):
#
#   platform/containers/image.sh                        # tags platform-app:local
#   IMAGE=platform-app:1.2.3 APP_VERSION=1.2.3 platform/containers/image.sh
#   platform/containers/image.sh --save FILE            # also writes `docker save` of it to FILE
#
# It takes an engine from engine.sh (one that answers, or its own in a network namespace, stopped
# again afterwards if this run started it). The base is BASE_IMAGE if set; otherwise the Dockerfile's
# official base when the engine has it or can pull it; otherwise, with no registry answering, the
# stand-in from local-images.sh, with the pinned wheels downloaded here into platform/wheelhouse/ so
# that the build's RUN steps need no network. It prints the build time and the image's size.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-platform-app:local}
APP_VERSION=${APP_VERSION:-local}
GIT_SHA=${GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
SOURCE_URL=${SOURCE_URL:-}
PYTHON=${PYTHON:-python3}
PULL_TIMEOUT=${PULL_TIMEOUT:-300}
WHEELHOUSE=platform/wheelhouse
save_to=
if [[ ${1:-} == --save ]]; then
  save_to=${2:?--save needs a file}
fi

say() { echo "image: $*" >&2; }

eval "$(platform/containers/engine.sh up)"
if [[ $ENGINE_STARTED == 1 ]]; then
  trap 'platform/containers/engine.sh down' EXIT
fi

default_base=$(sed -n 's/^ARG BASE_IMAGE=//p' platform/Dockerfile)
base=${BASE_IMAGE:-$(platform/containers/local-images.sh python --unless-available "$default_base")}
rm -f "$WHEELHOUSE"/*.whl
if [[ $base == platform-local/* ]]; then
  # The stand-in means no registry, and most likely builds whose RUN steps have no network: the
  # wheels for the image's platform (CPython 3.11, x86_64 glibc) are fetched here, whatever Python
  # runs this script, and the Dockerfile installs from them alone.
  platforms=(--platform manylinux2014_x86_64 --platform linux_x86_64)
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$WHEELHOUSE" --only-binary=:all: \
    --implementation cp --python-version 3.11 "${platforms[@]}" -r requirements.txt
fi
say "building $IMAGE from $base"
started=$SECONDS
docker build --file platform/Dockerfile --tag "$IMAGE" \
  --build-arg "BASE_IMAGE=$base" --build-arg "APP_VERSION=$APP_VERSION" \
  --build-arg "GIT_SHA=$GIT_SHA" --build-arg "SOURCE_URL=$SOURCE_URL" . >&2
build_seconds=$((SECONDS - started))
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE ($APP_VERSION, $GIT_SHA) in $build_seconds s; size $((size / 1000000)) MB"
if [[ -n $save_to ]]; then
  docker save --output "$save_to" "$IMAGE"
  say "saved $IMAGE to $save_to"
fi
