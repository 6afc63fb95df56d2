#!/usr/bin/env bash
# Builds mosaic's CUDA binaries here (nvcc 13.0, sm_90a) and packs them with the shared
# libraries the GPU machine lacks (fmt, libgomp), so no device time goes into compiling. The
# GPU machine brings the CUDA libraries (cudart, cuBLASLt, cuDNN) itself. OpenBLAS is linked
# statically, `mosaic serve` left out (cpp-httplib and its TLS and compression libraries would
# not fit beside the repository), and the binaries stripped and packed in one xz stream: the repository with the
# shipped models is ~61.6 MiB of the device tool's 64 MiB per call (counted in 4 KiB blocks), so the bundle
# must stay small. On 2026-12-03 the two together passed the limit: moving models/mosaic-moe-tiny/model.safetensors
# out of the tree for the call (and leaving out the three GPU tests that read it) made room.
#
#   bash tools/bench/make_gpu_bundle.sh            # -> .deps/bundle/gpu.tar.xz (~3.5 MB)
#
# Then, on the GPU machine (the device tool: carry .deps/bundle):
#   mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
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
ls -la .deps/bundle/gpu.tar.xz
