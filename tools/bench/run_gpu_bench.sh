#!/usr/bin/env bash
# One model's benchmark on the GPU machine: mosaic and the PyTorch reference sampler in the
# same call, on the same random weights (the checkpoint make_checkpoint.py writes and the
# --preset weights bench_step.py builds come from the same per-tensor seeds).
#
#   bash tools/bench/run_gpu_bench.sh llada-8b OUTDIR [MOSAIC_BIN]
#
# 1. writes the checkpoint (tools/reference/make_checkpoint.py, bf16, generated on the GPU)
# 2. mosaic bench at $LENGTHS (cuDNN attention), with the live-bytes profile of the first
# 3. the reference sampler's step (bench_step.py) at the same lengths, its max length, and
#    its allocator timeline at the first length
# 4. mosaic's plan-based max length, confirmed by a real step at $CONFIRM tokens through
#    $CONFIRM_LAYERS layer(s) (a full 32-layer step at 1M tokens takes ~15 minutes)
# 5. tools/bench/compare.py prints the ratio table
# Outputs (JSON) land in OUTDIR; each stage is bounded by `timeout`.
set -uo pipefail
preset=${1:?preset: llada-8b or dream-7b}
out=${2:?output dir}
bin=${3:-build/bin/mosaic}
# gpu_session.sh passes the carried libraries in MOSAIC_LIBS; only mosaic gets them.
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
mkdir -p "$out"
ck=${CKPT_DIR:-/tmp/ckpt-$preset}
export PYTHONUNBUFFERED=1
lengths=${LENGTHS:-16384,4096,32768}
softmax=${SOFTMAX:-float64}
confirm=${CONFIRM:-1048576}
stage() {  # stage SECONDS NAME CMD...: runs CMD under a time limit, logs its status
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "== [$preset] $name (limit ${limit}s)"
  timeout --foreground --kill-after=10 "$limit" "$@"  # same process group: an outer timeout reaches it
  local rc=$?
  echo "== [$preset] $name: rc=$rc in $((SECONDS - t0)) s"
  return $rc
}

[ -f "$ck/config.json" ] || stage 150 checkpoint python3 tools/reference/make_checkpoint.py --preset "$preset" \
  --out "$ck" --device "${DEVICE:-cuda}"
stage 120 mosaic-bench env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend "${BACKEND:-cuda}" --tokens "$lengths" --json "$out/mosaic.json" \
  --profile "$out/mosaic_profile.json"
stage 180 torch-bench python3 tools/reference/bench_step.py --preset "$preset" --tokens "$lengths" \
  --softmax-dtype "$softmax" --device "${DEVICE:-cuda}" --max-tokens --granularity 512 --json "$out/torch.json" --profile "$out/torch_profile.json"
stage 150 mosaic-max env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend "${BACKEND:-cuda}" --max-tokens --confirm-tokens "$confirm" \
  --layers "${CONFIRM_LAYERS:-1}" --iters 1 --warmup 0 --json "$out/mosaic_max.json"
[ -n "${FLASH_LENGTHS:-}" ] && MOSAIC_ATTENTION=flash stage 60 mosaic-flash env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" \
  --backend "${BACKEND:-cuda}" --tokens "$FLASH_LENGTHS" --iters 3 --json "$out/mosaic_flash.json"
python3 tools/bench/compare.py "$out"
