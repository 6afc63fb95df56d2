#!/usr/bin/env bash
# Peak taming on the GPU: one model, mosaic's step at each --chunk-min-rows floor and the
# PyTorch reference sampler, all in the same device call on the same random weights; then
# the 1M-class step through one layer with the default floor.
#
#   bash tools/bench/floor_sweep.sh llada-8b OUTDIR MOSAIC_BIN
#   FLOORS="1024 512 0" LENGTHS=16384,4096,32768 CONFIRM=1048576  (the defaults)
#   a floor F:T also sets --tame-target T (F:0 = tame down to F, no peak/avg goal)
#   OP_TIMES=1: the first floor's run also prints where each step's time goes (bench --op-times)
#   PREV_BIN=path: also runs that (older) mosaic at its default floor, as prev.json, for a
#   before/after comparison in the same device call
# Outputs: OUTDIR/floor_<F>.json (mosaic bench), torch.json, mosaic_max.json, and the table
# of tools/bench/floor_table.py.
set -uo pipefail
preset=${1:?preset: llada-8b or dream-7b}
out=${2:?output dir}
bin=${3:?mosaic binary}
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
lengths=${LENGTHS:-16384,4096,32768}
mkdir -p "$out"
ck=${CKPT_DIR:-/tmp/ckpt-$preset}
export PYTHONUNBUFFERED=1
stage() {  # stage SECONDS NAME CMD...
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "== [$preset] $name (limit ${limit}s)"
  timeout --foreground --kill-after=10 "$limit" "$@"
  echo "== [$preset] $name: rc=$? in $((SECONDS - t0)) s"
}
[ -f "$ck/config.json" ] || stage 150 checkpoint python3 tools/reference/make_checkpoint.py --preset "$preset" \
  --out "$ck" --device cuda
first=1
for spec in ${FLOORS:-1024 512 0}; do
  f=${spec%%:*}
  target=()
  name=floor_$f
  if [ "$spec" != "$f" ]; then target=(--tame-target "${spec#*:}"); name=${name}_t${spec#*:}; fi
  prof=()
  [ $first = 1 ] && prof=(--profile "$out/mosaic_profile.json")
  [ $first = 1 ] && [ -n "${OP_TIMES:-}" ] && prof+=(--op-times)
  first=0
  stage 90 "mosaic floor $spec" env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend cuda --tokens "$lengths" \
    --iters "${ITERS:-5}" --chunk-min-rows "$f" "${target[@]}" --json "$out/$name.json" "${prof[@]}"
done
[ -n "${PREV_BIN:-}" ] && stage 90 "previous mosaic" env LD_LIBRARY_PATH="$libs" "$PREV_BIN" bench --model "$ck" \
  --backend cuda --tokens "$lengths" --iters "${ITERS:-5}" --json "$out/prev.json"
stage 150 torch-bench python3 tools/reference/bench_step.py --preset "$preset" --tokens "$lengths" \
  --softmax-dtype float64 --device cuda --json "$out/torch.json" --profile "$out/torch_profile.json"
[ -n "${CONFIRM:-}" ] && stage 120 mosaic-max env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend cuda \
  --max-tokens --confirm-tokens "$CONFIRM" --layers 1 --iters 1 --warmup 0 --json "$out/mosaic_max.json"
python3 tools/bench/floor_table.py "$out"
