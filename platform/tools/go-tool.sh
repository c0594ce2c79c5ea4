#!/usr/bin/env bash
# Prints the path of a Go-built tool, building it first when this machine's cache lacks it:
#
#   platform/tools/go-tool.sh github.com/rhysd/actionlint/cmd/actionlint v1.7.12
#   platform/tools/go-tool.sh platform/tools/prometheus github.com/prometheus/prometheus/cmd/prometheus
#
# The first form is `go install PACKAGE@VERSION` (the module's own go.mod, checked against the
# checksum database). The second builds PACKAGE in a tools module of this repository, whose go.mod
# and go.sum pin every dependency (for modules `go install` refuses: those with replace directives).
# The binary goes to ~/.cache/platform/tools/NAME-VERSION/ (or NAME-<hash of go.mod and go.sum>/),
# outside the repository, once per machine. Needs Go (1.25 or later); LDFLAGS adds linker flags.
set -euo pipefail
shopt -s inherit_errexit
cache=${PLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/platform}/tools
if [[ -d ${1:?usage: go-tool.sh PACKAGE VERSION | go-tool.sh TOOLS_MODULE PACKAGE} ]]; then
  module=$(cd "$1" && pwd)
  package=${2:?usage: go-tool.sh TOOLS_MODULE PACKAGE}
  version=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
else
  module=
  package=$1
  version=${2:?usage: go-tool.sh PACKAGE VERSION}
fi
# The binary is named as `go install` names it: after the last path element that is not a major
# version suffix (k8s.io/kube-state-metrics/v2 builds kube-state-metrics).
name=${package##*/}
if [[ $name =~ ^v[0-9]+$ && $package == */*/* ]]; then
  name=${package%/*}
  name=${name##*/}
fi
directory=$cache/$name-$version
if [[ ! -x $directory/$name ]]; then
  command -v go >/dev/null || { echo "go-tool.sh: no go command to build $name with; install Go" >&2; exit 1; }
  mkdir -p "$directory/.build"
  echo "go-tool.sh: building $package${module:+ in $module} into $directory" >&2
  started=$SECONDS
  # A build that fails half way leaves nothing that looks like the tool.
  if [[ -n $module ]]; then
    (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n 10 \
      go build -trimpath -ldflags="-s -w ${LDFLAGS:-}" -o "$directory/.build/$name" "$package") >&2
  else
    GOBIN="$directory/.build" GOFLAGS=-trimpath go install "$package@$version" >&2
  fi
  mv "$directory/.build/$name" "$directory/$name"
  rmdir "$directory/.build"
  echo "go-tool.sh: built $name in $((SECONDS - started)) s" >&2
fi
echo "$directory/$name"
