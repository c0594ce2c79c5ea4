#!/usr/bin/env bash
# Jaeger for the platform's traces on this machine (`make up` runs it): built from its Go module once
# per machine (platform/tools/go-tool.sh), then run with platform/jaeger/config.yaml, in memory.
# UI and query API on JAEGER_QUERY_ADDRESS (127.0.0.1:16686), OTLP/HTTP in on
# JAEGER_OTLP_HTTP_ADDRESS (127.0.0.1:4318), where the services' OTEL_EXPORTER_OTLP_ENDPOINT points.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jaeger=$("$here/../tools/go-tool.sh" "$here/../tools/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
exec "$jaeger" --config "file:$here/config.yaml"
