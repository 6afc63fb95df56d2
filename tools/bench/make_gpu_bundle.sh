#!/usr/bin/env bash
# Builds mosaic's CUDA binaries here (nvcc 13.0, sm_90a) and packs them with the shared
# libraries the GPU machine lacks (fmt, OpenBLAS and its Fortran runtime, libgomp), so no
# device time goes into compiling. The GPU machine brings the CUDA libraries (cudart,
# cuBLASLt, cuDNN) itself.
#
#   bash tools/bench/make_gpu_bundle.sh            # -> .deps/bundle/gpu.tar.xz (~7 MB)
#
# Then, on the GPU machine (the device tool: carry .deps/bundle):
#   mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
#   PACK=$OUT/results.tgz bash tools/bench/gpu_session.sh /tmp/b/gpu /tmp/res 565
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOSAIC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DMOSAIC_BENCH=OFF -DPython3_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build build-gpu --target mosaic mosaic_gpu_tests
stage=$(mktemp -d)
mkdir -p "$stage/gpu/lib" .deps/bundle
cp build-gpu/bin/mosaic build-gpu/bin/mosaic_gpu_tests "$stage/gpu/"
for lib in libfmt.so.9 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$lib" "$stage/gpu/lib/"
done
tar cJf .deps/bundle/gpu.tar.xz -C "$stage" gpu
rm -rf "$stage"
ls -la .deps/bundle/gpu.tar.xz
