#!/usr/bin/env bash
# The main job from a fresh clone: install dependencies, build, and generate text with the
# model that ships in models/. Extra arguments go to `mosaic generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
MOSAIC_SKIP_PY=1 bash tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOSAIC_TESTS=OFF -DMOSAIC_BENCH=OFF >/dev/null
cmake --build build --target mosaic
./build/bin/mosaic generate "$@"
