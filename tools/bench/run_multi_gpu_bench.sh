#!/usr/bin/env bash
# Issue 17's measurement: one LLaDA-8B-shaped step sharded across N GPUs of this host against one
# GPU, all in the same call, on the same random weights.
#
#   bash tools/bench/run_multi_gpu_bench.sh OUTDIR [MOSAIC_BIN]
#
# RANKS: the rank counts to run (default: 1 and every power of two up to the GPUs found).
# SHARE=1: every rank on GPU 0 (--devices 0,0,..): on a one-GPU machine this checks the sharded
#   path end to end at full size (the ranks take turns on the device: no speedup is expected).
# LENGTHS: the steps timed at full depth; LONG/LONG_LAYERS: a longer step through its first
#   layers only (a full 32-layer step at 1M tokens takes ~16 minutes on one H200).
# EXCHANGES: the attention exchanges timed on N > 1 ranks (default both: all-gather all-to-all).
#
# 1. writes the checkpoint (tools/reference/make_checkpoint.py, bf16, on the GPU)
# 2. mosaic bench --gpus N (or --devices) per N and exchange at LENGTHS, then at LONG through
#    LONG_LAYERS layers
# 3. mosaic info --gpus N --exchange E: the longest step N GPUs fit (from the plan)
# 4. tools/bench/scaling_table.py prints time, speedup and efficiency against one GPU
# Outputs (JSON and logs) land in OUTDIR; each stage is bounded by `timeout`.
set -uo pipefail
out=${1:?output dir}
bin=${2:-build/bin/mosaic}
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
mkdir -p "$out"
ck=${CKPT_DIR:-/tmp/ckpt-llada-8b}
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ -z "${RANKS:-}" ]; then
  RANKS=1
  for n in 2 4 8; do [ "$n" -le "$gpus" ] && RANKS="$RANKS $n"; done
fi
lengths=${LENGTHS-16k,64k,256k}  # set but empty: no full-depth steps
long=${LONG-1M}
long_layers=${LONG_LAYERS:-2}
exchanges=${EXCHANGES:-all-gather all-to-all}
stage() {  # stage SECONDS NAME CMD...: runs CMD under a time limit, logs its status
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout --foreground --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  return $rc
}
ranks_flag() {  # the flag that puts N ranks where this run wants them
  if [ "${SHARE:-0}" = 1 ]; then
    local list=0
    for ((i = 1; i < $1; i++)); do list="$list,0"; done
    echo "--devices $list"
  else
    echo "--gpus $1"
  fi
}

echo "GPUs: $gpus; ranks: $RANKS; share one GPU: ${SHARE:-0}"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
[ -f "$ck/config.json" ] || stage 200 checkpoint python3 tools/reference/make_checkpoint.py --preset llada-8b \
  --out "$ck" --device cuda
for n in $RANKS; do
  ex_list=one
  [ "$n" -gt 1 ] && ex_list=$exchanges
  for ex in $ex_list; do
    ex_flag=() tag=$n
    [ "$ex" != one ] && ex_flag=(--exchange "$ex") tag="${n}_$ex"
    if [ -n "$lengths" ]; then
      # shellcheck disable=SC2046
      stage "${STEP_LIMIT:-240}" "bench ranks=$n $ex" env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" \
        --backend cuda $(ranks_flag "$n") "${ex_flag[@]}" --tokens "$lengths" --warmup 1 --iters "${ITERS:-3}" \
        --json "$out/ranks$tag.json"
    fi
    if [ -n "$long" ]; then
      # shellcheck disable=SC2046
      stage "${LONG_LIMIT:-300}" "bench ranks=$n $ex long" env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" \
        --backend cuda $(ranks_flag "$n") "${ex_flag[@]}" --tokens "$long" --layers "$long_layers" --warmup 0 \
        --iters 1 --json "$out/ranks${tag}_long.json"
    fi
    env LD_LIBRARY_PATH="$libs" "$bin" info --model "$ck" --backend cuda --tokens 1048576 --gpus "$n" \
      "${ex_flag[@]}" --memory-budget 0.95 > "$out/info_ranks$tag.txt" 2>&1
  done
done
python3 tools/bench/scaling_table.py "$out"
