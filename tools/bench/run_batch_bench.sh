#!/usr/bin/env bash
# The batch dimension on one GPU (issue 15): generations of 1, 4 and 16 sequences at once, their
# steps in shared passes as `mosaic serve` runs concurrent requests, on LLaDA-8B's shape (random
# bf16 weights) with a fixed schedule (one token per step), per cache mode, in one
# `mosaic bench --batch` call (the same process, weights and prompts). Then, with STAGES
# including `gpu-tests`, the GPU tests first.
#
#   bash tools/bench/run_batch_bench.sh OUTDIR [BINDIR]
#
# BINDIR holds mosaic and mosaic_gpu_tests (tools/bench/make_gpu_bundle.sh), default build/bin.
# Environment: STAGES (default "gpu-tests checkpoint batch"; also per-sequence: the same run with
# MOSAIC_BATCH_ATTENTION=per-sequence, one attention call per sequence), LENGTHS (default 512: a
# 256-token prompt + GEN_LENGTH 256), CACHE (default dual,prefix), SIZES (default 1,4,16), BLOCK
# (32), OP_TIMES=1 (adds --op-times), CKPT_DIR (/tmp/ckpt-llada-8b), MOSAIC_LIBS.
set -uo pipefail
out=${1:?output dir}
bindir=${2:-build/bin}
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bindir=$(cd "$bindir" && pwd)
cd "$(dirname "$0")/../.."
export MOSAIC_SOURCE_DIR=$PWD PYTHONUNBUFFERED=1
ck=${CKPT_DIR:-/tmp/ckpt-llada-8b}
stages=" ${STAGES:-gpu-tests checkpoint batch} "
want() { [[ $stages == *" $1 "* ]]; }
run() {  # run LIMIT NAME CMD...
  local limit=$1 name=$2; shift 2
  echo "== [batch] $name (limit ${limit}s)" >&2
  local t0=$SECONDS
  timeout --foreground --kill-after=10 "$limit" "$@"
  echo "== [batch] $name: rc=$? in $((SECONDS - t0)) s" >&2
}
{
  date -u '+%F %T UTC'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  git log -1 --format='%h %s' 2>/dev/null
  nproc
} > "$out/env.txt" 2>&1
if want gpu-tests; then
  run 240 gpu-tests env LD_LIBRARY_PATH="$libs" "$bindir/mosaic_gpu_tests" \
    --gtest_filter="${GPU_FILTER:--FlashAttention.Large*:FlashAttention.ListVariants:CudnnAttention.Timing*:SplitAttention.CachedStepShapesTimed}" \
    > "$out/gpu_tests.log" 2>&1
  grep -E "^\[  (PASSED|FAILED) |tests ran|FAILED  \]" "$out/gpu_tests.log"
fi
if want checkpoint && [ ! -f "$ck/config.json" ]; then
  run 200 checkpoint python3 tools/reference/make_checkpoint.py --preset llada-8b --out "$ck" --device cuda
fi
bench() {  # bench NAME [ENV...]: one mosaic bench --batch run -> NAME.json, NAME.log
  local name=$1; shift
  run "${BATCH_LIMIT:-300}" "$name" env LD_LIBRARY_PATH="$libs" "$@" "$bindir/mosaic" bench --model "$ck" \
    --backend cuda --tokens "${LENGTHS:-512}" --gen-length "${GEN_LENGTH:-256}" --block-length "${BLOCK:-32}" \
    --cache "${CACHE:-dual,prefix}" --batch "${SIZES:-1,4,16}" ${OP_TIMES:+--op-times} --json "$out/$name.json" \
    > "$out/$name.log" 2>&1
  cat "$out/$name.log"
}
want batch && bench batch
want per-sequence && bench batch_per_sequence MOSAIC_BATCH_ATTENTION=per-sequence
