#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer (issue 16), in a build
# folder of its own (build-sanitize/: clang, no CUDA, no benchmarks). Everything is
# instrumented: the library, the tests and the mosaic binary that the CLI tests run. A report
# fails the test that made it: UBSan is built not to recover, ASan aborts at the first error,
# LeakSanitizer fails the process at exit. .ci/run runs it after tools/test.sh. No test is left
# out: on 2 cores the build takes ~6.5 minutes and the whole suite ~1 (the slowest test, ~25 s).
#
#   bash tools/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -gline-tables-only"
generator=(-G Ninja)
[ -f build-sanitize/CMakeCache.txt ] && generator=()  # keep the generator build-sanitize/ was made with
CC=clang CXX=clang++ cmake -S . -B build-sanitize "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS="$sanitize" -DCMAKE_CXX_FLAGS="$sanitize" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DMOSAIC_CUDA=OFF -DMOSAIC_TESTS=ON -DMOSAIC_BENCH=OFF -DMOSAIC_FUZZ=OFF \
      -DPython3_EXECUTABLE="$PWD/.venv/bin/python" >/dev/null
cmake --build build-sanitize
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
# Tests run side by side, each with OpenMP threads for every core: waiting threads sleep
# instead of spinning, or each test's barriers spin against the other's work (~4x slower).
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} ctest --test-dir build-sanitize -LE gpu --no-tests=error --output-on-failure -j "$(nproc)"
