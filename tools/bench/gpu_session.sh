#!/usr/bin/env bash
# Everything the GPU machine is needed for, in one call (device time is scarce):
#   GPU tests (CUDA vs CPU), compute-sanitizer memcheck, LLaDA-8B and Dream-7B benchmarks
#   against the PyTorch reference sampler, flash-attention kernel tests.
#
#   bash tools/bench/gpu_session.sh BINDIR RESULTS_DIR [DEADLINE_SECONDS]
#
# BINDIR holds mosaic and mosaic_gpu_tests (built with -DMOSAIC_CUDA=ON, sm_90a) and, in
# BINDIR/lib, the shared libraries the GPU machine may lack (fmt, OpenBLAS, gfortran).
# The stages run in order of importance and each is skipped when the deadline would cut it;
# $PACK (default RESULTS_DIR.tgz) is rewritten after every stage so a cut-off run still
# returns data.
set -uo pipefail
bindir=$(cd "${1:?BINDIR}" && pwd)
res=${2:?RESULTS_DIR}
deadline=${3:-560}
mkdir -p "$res"
res=$(cd "$res" && pwd)
cd "$(dirname "$0")/../.."
export MOSAIC_SOURCE_DIR=$PWD PYTHONUNBUFFERED=1

# The CUDA libraries: the toolkit's, the system's, then pip's (cuDNN may live in any).
libdirs="$bindir/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu; do
  [ -d "$d" ] && libdirs="$libdirs:$d"
done
for name in libcublasLt.so.13 libcudnn.so.9 libcudart.so.13; do
  if ! ldconfig -p | grep -q "$name" && ! ls /usr/local/cuda/lib64/$name >/dev/null 2>&1; then
    for f in $(find /usr /opt -name "$name" 2>/dev/null | head -3); do libdirs="$libdirs:$(dirname "$f")"; done
  fi
done
# Only mosaic's processes get this path: PyTorch brings its own cuDNN, and the system's
# (older) one first on the path makes torch.backends.cudnn refuse to load.
export MOSAIC_LIBS="$libdirs:${LD_LIBRARY_PATH:-}"

left() { echo $((deadline - SECONDS)); }
pack() { tar czf "${PACK:-$res.tgz}" -C "$(dirname "$res")" "$(basename "$res")" 2>/dev/null; }
run_stage() {  # run_stage NEEDED_SECONDS CAP_SECONDS NAME CMD...
  local need=$1 cap=$2 name=$3; shift 3
  if [ "$(left)" -lt "$need" ]; then echo "== SKIPPED $name: $(left) s left, needs $need"; return; fi
  local t0=$SECONDS limit=$(( $(left) - 5 ))
  [ "$limit" -gt "$cap" ] && limit=$cap
  echo "== $name (at ${SECONDS}s, limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$res/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  tail -n "${TAIL:-6}" "$res/$name.log"
  pack
}

{
  date -u '+%F %T UTC'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, torch.backends.cudnn.version())"
  echo "mosaic's LD_LIBRARY_PATH=$MOSAIC_LIBS"
  env LD_LIBRARY_PATH="$MOSAIC_LIBS" ldd "$bindir/mosaic" | grep -E "not found|cudnn|cublas|cudart|openblas|fmt"
  nproc; free -g | head -2; df -h /tmp | tail -1
} > "$res/env.txt" 2>&1
cat "$res/env.txt"
pack

TAIL=4 run_stage 60 120 gpu_tests env LD_LIBRARY_PATH="$MOSAIC_LIBS" "$bindir/mosaic_gpu_tests" --gtest_filter='-FlashAttention.*'
grep -E "^\[  (PASSED|FAILED) |golden|equal:|TFLOP" "$res/gpu_tests.log" | head -40
TAIL=8 run_stage 20 40 generate_gpu env LD_LIBRARY_PATH="$MOSAIC_LIBS" "$bindir/mosaic" generate --backend cuda --model models/mosaic-tiny --prompt "And God said" --gen-length 128
LENGTHS=16384,4096,32768 CONFIRM=1048576 FLASH_LENGTHS=4096,16384 TAIL=30 run_stage 200 240 llada bash tools/bench/run_gpu_bench.sh llada-8b \
  "$res/llada" "$bindir/mosaic"
rm -rf /tmp/ckpt-llada-8b
LENGTHS=16384,4096,32768 CONFIRM=819200 TAIL=30 run_stage 150 210 dream bash tools/bench/run_gpu_bench.sh dream-7b \
  "$res/dream" "$bindir/mosaic"
TAIL=12 run_stage 40 90 flash_tests env LD_LIBRARY_PATH="$MOSAIC_LIBS" "$bindir/mosaic_gpu_tests" --gtest_filter='FlashAttention.*'
run_stage 40 150 sanitizer env LD_LIBRARY_PATH="$MOSAIC_LIBS" compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "$bindir/mosaic_gpu_tests" \
  --gtest_filter='CudaKernels.*:CudaModel.LogitsMatchTheCpuBackend:CudaModel.ChunkedEqualsUnchunkedOnTheGpu:CudaModel.VmmRegion*'
grep -E "ERROR SUMMARY|PASSED|FAILED" "$res/sanitizer.log" | head
echo "== done at ${SECONDS}s"
pack
