#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan + UBSan) and runs each for SECONDS
# (default 30) on its seed corpus (fuzz/corpus/<target>/; new inputs go to build-fuzz/corpus/).
# A crash, leak or sanitizer report stops that target with its input saved in build-fuzz/ and
# makes the script fail.
#
#   bash tools/fuzz.sh 600        # ten minutes per target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
MOSAIC_SKIP_PY=1 bash tools/deps.sh  # clang and its runtimes
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOSAIC_FUZZ=ON \
  -DMOSAIC_TESTS=OFF -DMOSAIC_BENCH=OFF -DMOSAIC_CUDA=OFF >/dev/null
cmake --build build-fuzz
status=0
for bin in build-fuzz/bin/fuzz_*; do
  name=$(basename "$bin")
  target=${name#fuzz_}
  mkdir -p "build-fuzz/corpus/$target"
  echo "== $name: ${seconds}s"
  (cd build-fuzz && "bin/$name" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
     "corpus/$target" "../fuzz/corpus/$target" 2>&1 | tail -n 12) || status=1
done
exit $status
