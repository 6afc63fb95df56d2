#!/usr/bin/env bash
# TIDE's expert offload on one GPU (issue 14): LLaDA2.0-mini's shape on random bf16 weights and the
# shipped trained MoE model, every placement in one `mosaic bench --offload` call per model (the
# same process, weights and prompt): gpu (all routed experts on the device, the upper bound),
# tide (interval refresh, tau from the cost model unless TAU is set), tide-lagged (its copies
# behind the steps), static, lru, cpu.
#
#   bash tools/bench/run_offload_bench.sh OUTDIR [MOSAIC_BIN]
#
# Stages (each bounded by `timeout`):
# 1. the checkpoint (make_checkpoint.py --preset llada2-mini, ~30.3 GiB into $CKPT_DIR, default
#    /tmp/ckpt-llada2-mini; skipped when present)
# 2. mosaic bench --offload on it: --gpu-experts $SLOTS (default 128 of 256), --tokens $LENGTHS
#    (default 1024: prompt + $GEN_LENGTH), --cache $CACHE (default prefix)  -> mini.json, mini.log
# 2b. mini-replay: the same with the shipped model's routing replayed into mini's MoE layers
#    (bench --routing-from models/mosaic-moe-tiny)                                  -> mini_replay.json, .log
# 3. the same on models/mosaic-moe-tiny with 32 of 64 experts, --moe-stats   -> tiny.json, tiny.log
# 4. mosaic info: LLaDA2.0-flash offloaded on an 80 GB GPU + 256 GB host         -> flash_info.txt
# 5. LLaDA2.0-flash's first $FLASH_LAYERS layers (default 4; its whole 192 GiB do not fit the
#    host): a checkpoint of those layers only, then bench --offload without gpu, --layers, with
#    $FLASH_SLOTS of 256 experts per layer (default 96, TIDE's flash setting)      -> flash.json, flash.log
# STAGES picks stages (default "mini mini-replay tiny flash-info flash"; also mini-tau; one device call is at most 10 minutes,
# so split them over calls). Environment: POLICIES (default gpu,tide,static,lru,cpu), TAUS, SLOTS, LENGTHS, GEN_LENGTH (256), CACHE, TAU (auto), CKPT_DIR, FLASH_LAYERS,
# FLASH_SLOTS, FLASH_DIR (/tmp/ckpt-llada2-flash-K), MOSAIC_LIBS.
set -uo pipefail
out=${1:?output dir}
bin=${2:-build/bin/mosaic}
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -e "$bin" ] && bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
cd "$(dirname "$0")/../.."
ck=${CKPT_DIR:-/tmp/ckpt-llada2-mini}
common=(--offload "${POLICIES:-gpu,tide,tide-lagged,static,lru,cpu}" --gen-length "${GEN_LENGTH:-256}" --block-length 32
        --cache "${CACHE:-prefix}" --refresh-interval "${TAU:-auto}" --moe-stats)
stages=" ${STAGES:-mini mini-replay tiny flash-info flash} "
want() { [[ $stages == *" $1 "* ]]; }
run() {  # run LIMIT NAME CMD...
  local limit=$1 name=$2; shift 2
  echo "== [offload] $name (limit ${limit}s)" >&2
  local t0=$SECONDS
  timeout --foreground --kill-after=10 "$limit" "$@"
  echo "== [offload] $name: rc=$? in $((SECONDS - t0)) s" >&2
}
if want mini || want mini-tau || want mini-replay; then
  [ -f "$ck/config.json" ] || run 200 checkpoint python3 tools/reference/make_checkpoint.py --preset llada2-mini \
  --out "$ck" --device cuda
fi
if want mini; then
run ${MINI_LIMIT:-420} mini env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend cuda --tokens "${LENGTHS:-1024}" \
  --gpu-experts "${SLOTS:-128}" "${common[@]}" --json "$out/mini.json" > "$out/mini.log" 2>&1
cat "$out/mini.log"
fi
if want mini-replay; then
run ${MINI_LIMIT:-420} mini-replay env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend cuda \
  --tokens "${LENGTHS:-1024}" --gpu-experts "${SLOTS:-128}" "${common[@]}" --routing-from models/mosaic-moe-tiny \
  --json "$out/mini_replay.json" > "$out/mini_replay.log" 2>&1
grep -v "^ *[0-9]* *[0-9]* *[0-9]* *[0-9.]* *[0-9]* *[0-9.]*$" "$out/mini_replay.log" | grep -v "loading weights"
fi
# mini-tau: TIDE alone at each fixed interval of $TAUS (default "2 4 8"), beside the auto choice above.
if want mini-tau; then
  for t in ${TAUS:-2 4 8}; do
    run 200 "mini-tau-$t" env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend cuda --tokens "${LENGTHS:-1024}" \
      --gpu-experts "${SLOTS:-128}" --offload tide --refresh-interval "$t" --gen-length "${GEN_LENGTH:-256}" \
      --block-length 32 --cache "${CACHE:-prefix}" --json "$out/mini_tau$t.json" > "$out/mini_tau$t.log" 2>&1
    grep -E "^ +[0-9]+ +tide" "$out/mini_tau$t.log"
  done
fi
want tiny && run 200 tiny env LD_LIBRARY_PATH="$libs" "$bin" bench --model models/mosaic-moe-tiny --backend cuda \
  --tokens "${LENGTHS:-1024}" --gpu-experts 32 "${common[@]}" --json "$out/tiny.json" > "$out/tiny.log" 2>&1
want tiny && tail -12 "$out/tiny.log"
want flash-info && run 60 flash-info env LD_LIBRARY_PATH="$libs" "$bin" info --config configs/llada2-flash/config.json \
  --gpu-experts 64 --memory-budget 80GB --host-memory 256GB > "$out/flash_info.txt" 2>&1
want flash-info && grep -E "offload|host|gpu experts" "$out/flash_info.txt"
want flash || exit 0
fl=${FLASH_LAYERS:-4}
fdir=${FLASH_DIR:-/tmp/ckpt-llada2-flash-$fl}
[ -f "$fdir/config.json" ] || run 300 flash-checkpoint python3 tools/reference/make_checkpoint.py \
  --config configs/llada2-flash/config.json --layers "$fl" --out "$fdir" --device cuda
run ${FLASH_LIMIT:-420} flash env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$fdir" --backend cuda --tokens "${LENGTHS:-1024}" \
  --layers "$fl" --gpu-experts "${FLASH_SLOTS:-96}" --offload tide,static,lru,cpu --gen-length "${GEN_LENGTH:-256}" \
  --block-length 32 --cache "${CACHE:-prefix}" --refresh-interval "${TAU:-auto}" --moe-stats \
  --json "$out/flash.json" > "$out/flash.log" 2>&1
tail -8 "$out/flash.log"
