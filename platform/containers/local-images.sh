#!/usr/bin/env bash
# Stand-ins, made from Debian's packages, for the images this project uses from registries, for
# machines that reach Debian's archive but no container registry:
#
#   platform/containers/local-images.sh python       # the app's base: Python 3.11 and venv (python:3.11-slim's layout)
#   platform/containers/local-images.sh postgres     # PostgreSQL 15 with the official image's start-up contract
#   platform/containers/local-images.sh prometheus   # Prometheus with the official image's layout
#   platform/containers/local-images.sh jaeger       # Jaeger v2, the binary `make up` runs (no Debian package)
#   platform/containers/local-images.sh postgres --unless-available postgres:15.14-bookworm
#
# Each prints the image reference to use (for BASE_IMAGE, POSTGRES_IMAGE, PROMETHEUS_IMAGE,
# JAEGER_IMAGE); with
# --unless-available, the official image's when the engine has it or can pull it. A root
# filesystem is built once with mmdebstrap and kept as a tarball in
# ${PLATFORM_CACHE:-~/.cache/platform}/images/, named by the hash of everything that goes into it
# (mmdebstrap's arguments, the import's settings, the stand-in's files): a second run, or an engine
# whose images were purged, reuses the tarball. Needs a reachable engine (DOCKER_HOST) and, for a cold build, root.
set -euo pipefail
shopt -s inherit_errexit
SELF=$(realpath "$0")
cd "$(dirname "$SELF")"
CACHE=${PLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/platform}/images
SUITE=bookworm
MIRRORS=(
  "deb http://deb.debian.org/debian $SUITE main"
  "deb http://deb.debian.org/debian $SUITE-updates main"
  "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# What the official images carry and containers never read: documentation, manuals, translations.
TRIM=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
# The environment python:3.11-slim sets; an imported root filesystem has none at all.
IMPORT_ENV=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
)

say() { echo "local-images: $*" >&2; }

packages_of() {
  case $1 in
    python) echo "python3 python3-venv python3-pip python-is-python3 ca-certificates tzdata" ;;
    # wget: the compose health check of prometheus:… uses it, as busybox's in the official image.
    prometheus) echo "prometheus wget ca-certificates tzdata" ;;
    # age: the backup image (platform/dr/Dockerfile) is this one with backup.sh and restore.sh, built
    # with no network; the official image gets it from the same Debian package.
    postgres) echo "postgresql-15 age tzdata" ;;
    *) return 1 ;;
  esac
}

root_filesystem_arguments() {  # root_filesystem_arguments NAME: sets BUILD, what mmdebstrap runs with
  BUILD=(--variant=minbase --include="$(packages_of "$1" | tr ' ' ,)" "${TRIM[@]}")
  # Hooks are shell run by mmdebstrap with the root filesystem's path as $1: single quotes on purpose.
  # shellcheck disable=SC2016
  case $1 in
    postgres)
      # uid and gid 999, as in the official image, written before postgresql-common's postinst
      # would pick free numbers (it keeps an existing user): manifests say runAsUser: 999.
      BUILD+=(--essential-hook='echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >>"$1/etc/passwd"; echo "postgres:x:999:" >>"$1/etc/group"; echo "postgres:*:19000:0:99999:7:::" >>"$1/etc/shadow"'
        # The entrypoint makes its own cluster in PGDATA: drop the one the package creates.
        --customize-hook='rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"')
      ;;
    prometheus)
      # moment-timezone's unpacked tz history (130 MB) is not used by the server or its API.
      BUILD+=(--dpkgopt='path-exclude=/usr/share/javascript/moment-timezone/data/unpacked/*')
      ;;
  esac
  BUILD+=("$SUITE" "${MIRRORS[@]}")
}

inputs_hash() {  # inputs_hash NAME: of everything that decides the image's content, and nothing else
  root_filesystem_arguments "$1"
  {
    printf '%s\0' "${BUILD[@]}" "${IMPORT_ENV[@]}"
    if [[ -d $1 ]]; then find "$1" -type f | LC_ALL=C sort | xargs cat; fi
  } | sha256sum | cut -c1-12
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

rootfs_image() {  # rootfs_image NAME HASH REFERENCE: the imported root filesystem, from the cache or built now
  local name=$1 hash=$2 reference=$3
  local tarball="$CACHE/$name-rootfs-$hash.tar"
  if have_image "$reference"; then
    echo "$reference"
    return
  fi
  if [[ ! -s $tarball ]]; then
    command -v mmdebstrap >/dev/null || {
      [[ $(id -u) == 0 ]] || { say "mmdebstrap is missing; install it (apt-get install mmdebstrap) or run as root"; exit 1; }
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap; } >&2
    }
    mkdir -p "$CACHE"
    root_filesystem_arguments "$name"
    say "building the $name root filesystem from Debian $SUITE packages: $(packages_of "$name")"
    local started=$SECONDS
    # The suite and mirrors end BUILD; the output goes between them, where mmdebstrap expects it.
    mmdebstrap --quiet --format=tar "${BUILD[@]:0:${#BUILD[@]}-${#MIRRORS[@]}}" "$tarball.partial" \
      "${MIRRORS[@]}" >&2
    mv "$tarball.partial" "$tarball"
    say "built $tarball ($(du -h "$tarball" | cut -f1)) in $((SECONDS - started)) s"
    # Older builds of the same image are superseded: the cache keeps one per name.
    find "$CACHE" -maxdepth 1 -name "$name-rootfs-*.tar" ! -name "${tarball##*/}" -delete
  fi
  docker import "${IMPORT_ENV[@]}" "$tarball" "$reference" >/dev/null
  echo "$reference"
}

# Jaeger is in no Debian release: its stand-in is the binary `make up` runs, built from its Go module
# (platform/tools/jaeger, once per machine), alone in an empty root filesystem as upstream's image
# runs it (uid 10001), tagged by the binary's hash.
jaeger_image() {
  local binary reference context
  binary=$(../tools/go-tool.sh ../tools/jaeger github.com/jaegertracing/jaeger/cmd/jaeger)
  reference="platform-local/jaeger:$(sha256sum "$binary" | cut -c1-12)"
  if ! have_image "$reference"; then
    context=$(mktemp -d)
    cp "$binary" "$context/jaeger"
    printf '%s\n' 'FROM scratch' 'COPY jaeger /jaeger' 'USER 10001:10001' 'ENTRYPOINT ["/jaeger"]' >"$context/Dockerfile"
    docker build --quiet --tag "$reference" "$context" >/dev/null
    rm -rf "$context"
  fi
  echo "$reference"
}

name=${1:-}
[[ $name == jaeger ]] || packages_of "$name" >/dev/null ||
  { echo "usage: $0 python|postgres|prometheus|jaeger [--unless-available IMAGE]" >&2; exit 2; }
if [[ ${2:-} == --unless-available ]]; then
  official=${3:?--unless-available needs an image}
  if have_image "$official" || timeout "${PULL_TIMEOUT:-300}" docker pull --quiet "$official" >/dev/null 2>&1; then
    echo "$official"
    exit 0
  fi
  say "no registry answers for $official: using the stand-in"
fi
if [[ $name == jaeger ]]; then
  jaeger_image
  exit 0
fi
hash=$(inputs_hash "$name")
if [[ ! -d $name ]]; then  # the root filesystem is the image (the Python base)
  rootfs_image "$name" "$hash" "platform-local/$name:$hash"
  exit 0
fi
rootfs=$(rootfs_image "$name" "$hash" "platform-local/$name-rootfs:$hash")
# A stand-in with its own start-up files: built from the root filesystem with no network needed.
reference="platform-local/$name:$hash"
if ! have_image "$reference"; then
  docker build --quiet --build-arg "ROOTFS=$rootfs" --tag "$reference" "$name" >/dev/null
fi
echo "$reference"
