#!/usr/bin/env bash
# Loads image tarballs (`docker save` or OCI archives) into the running node's containerd, where
# pods find them without any registry (use imagePullPolicy: IfNotPresent or Never).
# usage: load-image.sh TARBALL...
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

(($# > 0)) || die "usage: load-image.sh TARBALL..."
ctr_node version >/dev/null 2>&1 || die "the node's containerd is not running; start the cluster with deploy/cluster/up.sh"
for tarball in "$@"; do
	[[ -s $tarball ]] || die "no image tarball at $tarball"
	ctr_node images import --platform linux/amd64 "$tarball"
done
