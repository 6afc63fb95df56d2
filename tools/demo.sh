#!/usr/bin/env bash
# The main job from a fresh clone: install dependencies, build, and generate text with the
# model that ships in models/. Extra arguments go to `mosaic generate`.
# It builds only `mosaic`, in the build/ that tools/test.sh uses too: the options (tests,
# benchmarks, CUDA) stay as they are, so that either script may run first.
set -euo pipefail
cd "$(dirname "$0")/.."
MOSAIC_SKIP_PY=1 bash tools/deps.sh
generator=(-G Ninja)
[ -f build/CMakeCache.txt ] && generator=()  # keep the generator build/ was made with
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target mosaic
./build/bin/mosaic generate "$@"
