#!/usr/bin/env bash
# Prints the CustomResourceDefinitions the manifests use: Gateway API's standard channel and Envoy
# Gateway's own (BackendTrafficPolicy and the rest), exactly as Envoy Gateway ENVOY_GATEWAY_VERSION
# ships them in its CRD chart (Gateway API v1.6.1 for v1.9.1). They come from the Go module proxy
# (the module github.com/envoyproxy/gateway, checked against the checksum database) into Go's module
# cache, once per machine:
#
#   deploy/gateway/crds.sh | kubectl apply --server-side -f -      # what Envoy Gateway's chart installs
#
# deploy/tests validates the Gateway, routes and policies against these schemas; the local cluster
# installs them (deploy/cluster/platform.sh), so its API server checks them too.
set -euo pipefail
shopt -s inherit_errexit
version=${ENVOY_GATEWAY_VERSION:-v1.9.1}
command -v go >/dev/null || { echo "crds.sh: no go command to fetch github.com/envoyproxy/gateway@$version with; install Go" >&2; exit 1; }
# Outside any module: `go mod download MODULE@VERSION` needs none, and a go.mod around the caller
# must not decide anything.
listing=$(cd / && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "github.com/envoyproxy/gateway@$version")
directory=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$listing")
[[ -d $directory/charts/gateway-crds-helm/templates ]] ||
	{ echo "crds.sh: no CRD chart in github.com/envoyproxy/gateway@$version ($directory)" >&2; exit 1; }
templates=$directory/charts/gateway-crds-helm/templates
# The chart wraps each file in a Helm condition: the lines of template syntax go, the YAML stays.
for file in "$templates/standard-gatewayapi-crds.yaml" "$templates"/generated/*.yaml; do
	grep -v '^{{' "$file"
	echo "---"
done
