#!/usr/bin/env bash
# One denoising step in layer segments, for steps longer than one device call may run
# (LLaDA-8B at 1M tokens: ~31 s per layer, ~17 min in all). Each call runs one segment and
# leaves the hidden state in $SEG_DIR for the next call (the GPU machine must stay warm
# between the calls: its /tmp is the hand-over).
#
#   bash tools/bench/segmented_step.sh llada-8b 1048576 0:11 OUTDIR MOSAIC_BIN
#   bash tools/bench/segmented_step.sh llada-8b 1048576 11:22 OUTDIR MOSAIC_BIN
#   bash tools/bench/segmented_step.sh llada-8b 1048576 22: OUTDIR MOSAIC_BIN   # runs the head
# Output: OUTDIR/segment_<FIRST>.json (mosaic bench) and .log.
set -uo pipefail
preset=${1:?preset}; tokens=${2:?tokens}; seg=${3:?FIRST:END}; out=${4:?output dir}; bin=${5:?mosaic binary}
seg_dir=${SEG_DIR:-/tmp/mosaic-seg}
first=${seg%%:*}; end=${seg#*:}
mkdir -p "$out" "$seg_dir"
ck=${CKPT_DIR:-/tmp/ckpt-$preset}
if [ "$first" != 0 ] && [ ! -f "$seg_dir/$preset-$tokens-$first.safetensors" ]; then
  echo "no hidden state for layer $first in $seg_dir (a fresh machine?): run the earlier segments first" >&2
  exit 2
fi
[ -f "$ck/config.json" ] || python3 tools/reference/make_checkpoint.py --preset "$preset" --out "$ck" --device cuda
args=(bench --model "$ck" --backend cuda --tokens "$tokens" --iters 1 --warmup 0 --segment "$seg"
      --json "$out/segment_$first.json")
[ "$first" != 0 ] && args+=(--hidden-in "$seg_dir/$preset-$tokens-$first.safetensors")
[ -n "$end" ] && args+=(--hidden-out "$seg_dir/$preset-$tokens-$end.safetensors")
t0=$SECONDS
env LD_LIBRARY_PATH="${MOSAIC_LIBS:-${LD_LIBRARY_PATH:-}}" "$bin" "${args[@]}" 2>&1 | tee "$out/segment_$first.log"
rc=${PIPESTATUS[0]}
echo "segment $seg: rc=$rc in $((SECONDS - t0)) s" | tee -a "$out/segment_$first.log"
[ "$rc" = 0 ] && [ "$first" != 0 ] && rm -f "$seg_dir/$preset-$tokens-$first.safetensors"
exit "$rc"
