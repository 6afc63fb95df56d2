#!/usr/bin/env bash
# Builds everything (the tests, the micro-benchmarks, and the CUDA backend too when nvcc is
# on PATH: it must compile even where no GPU can run it) and runs every test that needs no
# GPU. On the GPU machine, `ctest --test-dir build -L gpu` runs the rest.
# MOSAIC_CUDA=ON|OFF in the environment overrides the nvcc check.
#
# It shares build/ with tools/demo.sh (build/bin/mosaic serves both, either may run first):
# the options it needs are set here explicitly, whatever an earlier configure left in the
# cache. A run that finds no test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cuda=${MOSAIC_CUDA:-}
if [ -z "$cuda" ]; then
  cuda=OFF
  command -v nvcc >/dev/null 2>&1 && cuda=ON
fi
generator=(-G Ninja)
[ -f build/CMakeCache.txt ] && generator=()  # keep the generator build/ was made with
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMOSAIC_CUDA="$cuda" \
      -DMOSAIC_TESTS=ON -DMOSAIC_BENCH=ON -DPython3_EXECUTABLE="$PWD/.venv/bin/python"
cmake --build build
# Tests run side by side, each with OpenMP threads for every core: waiting threads sleep
# instead of spinning, or each test's barriers spin against the other's work (~4x slower).
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} ctest --test-dir build -LE gpu --no-tests=error --output-on-failure -j "$(nproc)"
