#!/usr/bin/env bash
# On the GPU machine: unpacks what tools/bench/make_gpu_bundle.sh packed (carried in .deps/bundle)
# into DIR (the binaries and their libraries in DIR/gpu), and puts the shipped MoE model, left
# out of the tree for the call's size limit, back into models/ (checked against its hash).
#
#   bash tools/bench/unpack_gpu_bundle.sh /tmp/b
set -euo pipefail
dir=${1:?where to unpack}
cd "$(dirname "$0")/../.."
mkdir -p "$dir"
tar xJf .deps/bundle/gpu.tar.xz -C "$dir"
moe=models/mosaic-moe-tiny/model.safetensors
if [ ! -f "$moe" ] && [ -f .deps/bundle/moe-tiny.safetensors.xz ]; then
  xz -dc .deps/bundle/moe-tiny.safetensors.xz > "$moe"
  echo "$(cat .deps/bundle/moe-tiny.sha256)  $moe" | sha256sum -c --quiet
fi
ls -la "$dir/gpu" "$moe"
