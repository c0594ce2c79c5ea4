#!/usr/bin/env bash
# Packs a directory into a one-layer image tarball in `docker save` format, with no engine and no
# registry, for `ctr images import`. The tar is reproducible: same input, same image id.
# usage: pack-image.sh ROOTFS_DIR NAME:TAG OUT.tar ENTRYPOINT_JSON [USER]
#   e.g. pack-image.sh rootfs registry.k8s.io/pause:3.10.1 pause.tar '["/pause"]' 65535:65535
set -euo pipefail

rootfs=$1 reference=$2 out=$3 entrypoint=$4 user=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
layer_digest=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir "$work/$layer_digest"
mv "$work/layer.tar" "$work/$layer_digest/layer.tar"

jq -cn --arg layer "sha256:$layer_digest" --argjson entrypoint "$entrypoint" --arg user "$user" '{
	architecture: "amd64", os: "linux",
	config: {Entrypoint: $entrypoint, User: $user, Env: ["PATH=/"]},
	rootfs: {type: "layers", diff_ids: [$layer]},
	history: [{created_by: "deploy/cluster/pack-image.sh"}]
}' >"$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/$config_digest.json"

jq -cn --arg config "$config_digest.json" --arg tag "$reference" --arg layer "$layer_digest/layer.tar" \
	'[{Config: $config, RepoTags: [$tag], Layers: [$layer]}]' >"$work/manifest.json"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.partial" \
	manifest.json "$config_digest.json" "$layer_digest"
mv "$out.partial" "$out"
