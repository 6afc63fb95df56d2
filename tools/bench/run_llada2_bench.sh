#!/usr/bin/env bash
# LLaDA2.0-mini (llada2_moe, 16.26 B parameters, 256 experts top-8) on one GPU: mosaic and the
# PyTorch peer of the official modeling code (tools/reference/bench_llada2.py) in the same call, on
# the same random weights (make_checkpoint.py's checkpoint and bench_llada2.py's --preset weights come
# from the same per-tensor seeds).
#
#   bash tools/bench/run_llada2_bench.sh OUTDIR [MOSAIC_BIN]
#
# Stages, in order of importance (each bounded by `timeout`; with DEADLINE=seconds a stage that no
# longer fits is skipped and the others are cut to what is left):
# 1. the checkpoint (make_checkpoint.py --preset llada2-mini, bf16, generated on the GPU, ~30.3 GiB
#    into $CKPT_DIR, default /tmp/ckpt-llada2-mini; skipped when present)
# 2. mosaic bench at $LENGTHS                                         -> mosaic.json
# 3. the peer: one generate() step at $LENGTHS for the loop and grouped MoE, the uncached official
#    generate() at $GEN_CONTEXT, then its max length (--max-seconds bounded)  -> torch.json
# 4. mosaic bench --cache none,prefix at $GEN_CONTEXT (gen 256, block 32) -> mosaic_gen.json
# 5. mosaic's plan-based max length, confirmed by a real step at $CONFIRM tokens through
#    $CONFIRM_LAYERS layers (default 2: layer 0 of LLaDA2.0-mini is dense, layer 1 the first MoE one;
#    CONFIRM= (empty) confirms at the planned maximum)          -> mosaic_max.json
# 6. mosaic generate --cache prefix on the same prompt (all 256 tokens, for the token comparison)
#                                                               -> mosaic_generate_prefix.json
# 7. tools/bench/compare_llada2.py prints the ratios and the token agreement
# Environment: LENGTHS (4096,16384,32768), PLAIN_LENGTHS (4096; empty skips the MOSAIC_MOE=plain run), GEN_CONTEXT (4096), CONFIRM (1048576), CONFIRM_LAYERS (2),
# GEN_MOE (loop: the official moe_infer; loop,grouped for both), MAX_SECONDS (240, the peer's max
# search), DEADLINE (seconds for the whole script; default none), CKPT_DIR, BACKEND (cuda),
# TORCH_SOURCE (preset | checkpoint: the peer builds the weights on the GPU, or loads $CKPT_DIR),
# TORCH_ARGS (more bench_llada2.py flags, e.g. "--device cpu --dtype float32" for a dry run on a tiny
# checkpoint), GEN_LENGTH (256), MOSAIC_LIBS (library path for mosaic only, as gpu_session.sh passes
# it). The checkpoint is left in $CKPT_DIR (rm -rf it to free the disk).
set -uo pipefail
out=${1:?output dir}
bin=${2:-build/bin/mosaic}
libs=${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -e "$bin" ] && bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
cd "$(dirname "$0")/../.."
ck=${CKPT_DIR:-/tmp/ckpt-llada2-mini}
export PYTHONUNBUFFERED=1
lengths=${LENGTHS:-4096,16384,32768}
gen_ctx=${GEN_CONTEXT:-4096}
gen_len=${GEN_LENGTH:-256}
read -r -a torch_extra <<< "${TORCH_ARGS:-}"
confirm=${CONFIRM-1048576}
deadline=${DEADLINE:-100000}
backend=${BACKEND:-cuda}
if [ "${TORCH_SOURCE:-preset}" = checkpoint ]; then torch_src=(--model "$ck"); else torch_src=(--preset llada2-mini); fi
torch_src+=(${torch_extra[@]+"${torch_extra[@]}"})

stage() {  # stage NEED CAP NAME CMD...: runs CMD under min(CAP, time left) unless less than NEED is left
  local need=$1 cap=$2 name=$3; shift 3
  local left=$((deadline - SECONDS - 5))
  if [ "$left" -lt "$need" ]; then echo "== [llada2] SKIPPED $name: ${left}s left, needs $need" >&2; return 99; fi
  local limit=$cap t0=$SECONDS
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== [llada2] $name (limit ${limit}s)" >&2
  timeout --foreground --kill-after=10 "$limit" "$@"  # same process group: an outer timeout reaches it
  local rc=$?
  echo "== [llada2] $name: rc=$rc in $((SECONDS - t0)) s" >&2
  return $rc
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda, 'grouped_mm', hasattr(torch, '_grouped_mm'))"
  df -h /tmp | tail -1; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

[ -f "$ck/config.json" ] || stage 120 600 checkpoint python3 tools/reference/make_checkpoint.py --preset llada2-mini \
  --out "$ck" --device cuda
stage 60 300 mosaic-bench env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend "$backend" \
  --tokens "$lengths" --json "$out/mosaic.json"
# The grouped MoE kernels against the per-expert form (host routing, 3 cuBLASLt GEMMs per expert).
[ -n "${PLAIN_LENGTHS-4096}" ] && stage 60 180 mosaic-bench-plain env MOSAIC_MOE=plain LD_LIBRARY_PATH="$libs" "$bin" bench \
  --model "$ck" --backend "$backend" --tokens "${PLAIN_LENGTHS-4096}" --iters 3 --json "$out/mosaic_plain.json"
stage 120 600 torch-bench python3 tools/reference/bench_llada2.py "${torch_src[@]}" --tokens "$lengths" \
  --moe loop,grouped --warmup 1 --iters 3 --generate --gen-context "$gen_ctx" --gen-length "$gen_len" --gen-block 32 \
  --gen-steps 32 --gen-threshold 1.0 --gen-moe "${GEN_MOE:-loop}" --max-tokens --granularity 512 \
  --max-seconds "${MAX_SECONDS:-240}" --json "$out/torch.json"
stage 60 300 mosaic-gen env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend "$backend" \
  --cache none,prefix --tokens "$gen_ctx" --gen-length "$gen_len" --block-length 32 --json "$out/mosaic_gen.json"
confirm_args=()
[ -n "$confirm" ] && confirm_args=(--confirm-tokens "$confirm")
stage 60 300 mosaic-max env LD_LIBRARY_PATH="$libs" "$bin" bench --model "$ck" --backend "$backend" --max-tokens \
  ${confirm_args[@]+"${confirm_args[@]}"} --layers "${CONFIRM_LAYERS:-2}" --iters 1 --warmup 0 --json "$out/mosaic_max.json"
# The generation prompt (= mosaic bench --cache's std::mt19937(1234) prompt), on the CPU.
python3 tools/reference/bench_llada2.py "${torch_src[@]}" --device cpu --gen-context "$gen_ctx" --gen-length "$gen_len" \
  --dump-prompt "$out/gen_prompt.txt" >&2
[ -s "$out/gen_prompt.txt" ] && stage 40 200 mosaic-generate env LD_LIBRARY_PATH="$libs" "$bin" generate --model "$ck" \
  --backend "$backend" --prompt-tokens "$(cat "$out/gen_prompt.txt")" --gen-length "$gen_len" --block-length 32 --steps 32 \
  --threshold 1 --temperature 0 --cache prefix --format json -q > "$out/mosaic_generate_prefix.json"
python3 tools/bench/compare_llada2.py "$out"
