#!/usr/bin/env bash
# Builds everything (the CUDA backend too when nvcc is on PATH: it must compile even where
# no GPU can run it) and runs every test that needs no GPU. On the GPU machine,
# `ctest --test-dir build -L gpu` runs the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cuda=OFF
command -v nvcc >/dev/null 2>&1 && cuda=ON
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOSAIC_CUDA=$cuda \
      -DPython3_EXECUTABLE="$PWD/.venv/bin/python"
cmake --build build
ctest --test-dir build -LE gpu --output-on-failure -j "$(nproc)"
