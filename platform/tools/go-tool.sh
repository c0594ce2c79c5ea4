#!/usr/bin/env bash
# Prints the path of a Go-built tool, building it first when this machine's cache lacks it:
#
#   platform/tools/go-tool.sh github.com/rhysd/actionlint/cmd/actionlint v1.7.12
#
# The binary is built from the Go module proxy (`go install MODULE@VERSION`, checked against the
# checksum database) into ~/.cache/platform/tools/NAME-VERSION/, outside the repository, once per
# machine and version. Needs Go (1.25 or later for actionlint); GOTOOLCHAIN is honoured.
set -euo pipefail
shopt -s inherit_errexit
package=${1:?usage: go-tool.sh PACKAGE VERSION}
version=${2:?usage: go-tool.sh PACKAGE VERSION}
name=${package##*/}
directory=${PLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/platform}/tools/$name-$version
if [[ ! -x $directory/$name ]]; then
  command -v go >/dev/null || { echo "go-tool.sh: no go command to build $name with; install Go" >&2; exit 1; }
  mkdir -p "$directory"
  echo "go-tool.sh: building $package@$version into $directory" >&2
  # A build that fails half way leaves nothing that looks like the tool.
  GOBIN="$directory/.build" GOFLAGS=-trimpath go install "$package@$version" >&2
  mv "$directory/.build/$name" "$directory/$name"
  rmdir "$directory/.build"
fi
echo "$directory/$name"
