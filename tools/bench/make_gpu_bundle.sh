#!/usr/bin/env bash
# Builds mosaic's CUDA binaries here (nvcc 13.0, sm_90a) and packs them with the shared
# libraries the GPU machine lacks (fmt, libgomp), so no device time goes into compiling. The
# GPU machine brings the CUDA libraries (cudart, cuBLASLt, cuDNN) itself. OpenBLAS is linked
# statically, `mosaic serve` left out (cpp-httplib and its TLS and compression libraries would
# not fit beside the repository), and the binaries stripped and packed in one xz stream.
#
# The device tool carries at most 64 MiB per call (counted in 4 KiB blocks), and the repository
# with the shipped models is ~61.6 MiB, ~36 MiB of it models/mosaic-moe-tiny/model.safetensors. So
# the bundle also holds that file xz-packed (~26 MiB): before the run call, delete it from the
# tree (`rm models/mosaic-moe-tiny/model.safetensors`; tracked files travel, this one then does
# not), and after the call put it back (`git checkout models/mosaic-moe-tiny/model.safetensors`).
# tools/bench/unpack_gpu_bundle.sh, on the GPU machine, unpacks both.
#
#   bash tools/bench/make_gpu_bundle.sh            # -> .deps/bundle/gpu.tar.xz (~3.5 MB), moe-tiny.safetensors.xz
#
# Then, on the GPU machine (the device tool: carry .deps/bundle):
#   bash tools/bench/unpack_gpu_bundle.sh /tmp/b     # binaries in /tmp/b/gpu, the MoE model back in models/
#   PACK=$OUT/results.tgz bash tools/bench/gpu_session.sh /tmp/b/gpu /tmp/res 565
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOSAIC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DMOSAIC_BENCH=OFF -DMOSAIC_SERVE=OFF -DBLA_STATIC=ON -DPython3_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build build-gpu --target mosaic mosaic_gpu_tests
stage=$(mktemp -d)
mkdir -p "$stage/gpu/lib" .deps/bundle
cp build-gpu/bin/mosaic build-gpu/bin/mosaic_gpu_tests "$stage/gpu/"
strip "$stage/gpu/mosaic" "$stage/gpu/mosaic_gpu_tests"
for lib in libfmt.so.9 libgomp.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$lib" "$stage/gpu/lib/"
done
if ldd "$stage/gpu/mosaic" | grep -q openblas; then
  echo "make_gpu_bundle: mosaic still links OpenBLAS dynamically (remove build-gpu/CMakeCache.txt)" >&2; exit 1
fi
tar cf - -C "$stage" gpu | xz -9e -T1 > .deps/bundle/gpu.tar.xz
rm -rf "$stage"
moe=models/mosaic-moe-tiny/model.safetensors
if [ -f "$moe" ]; then
  xz -1 -T2 -c "$moe" > .deps/bundle/moe-tiny.safetensors.xz
  sha256sum "$moe" | cut -d' ' -f1 > .deps/bundle/moe-tiny.sha256
fi
ls -la .deps/bundle/
