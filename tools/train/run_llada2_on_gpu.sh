#!/usr/bin/env bash
# Train mosaic-moe-tiny (LLaDA2.0 architecture, llada2_moe) end to end on the GPU machine, within
# one time budget.
#
#   bash tools/train/run_llada2_on_gpu.sh OUTDIR [extra train_llada2.py flags]
#
# From the repo root, with tools/train/data/ carried over (corpus.txt, heldout.txt and, if
# prepared, tokenizer/). Steps: tokenizer (only if data/tokenizer/ is absent) -> MoE self-test
# (grouped_mm vs the expert loop vs a dense computation) -> train_llada2.py (trains until the
# budget, exports, reload-checks against tools/reference/llada2.py, evaluates, samples).
# OUTDIR gets 6 files: config.json model.safetensors tokenizer.json tokenizer_config.json
# (the checkpoint: commit as models/mosaic-moe-tiny/) + metrics.json train.log.
# The resumable checkpoint (with optimizer state) stays in tools/train/work/llada2_last.pt:
#   bash tools/train/run_llada2_on_gpu.sh OUTDIR --resume tools/train/work/llada2_last.pt
#
# Env: BUDGET_MIN (default 8: the whole script, from its start, final export/eval/samples
# included), PYTHON (default python3).
set -euo pipefail
T0=$(date +%s)
OUT=${1:?usage: bash tools/train/run_llada2_on_gpu.sh OUTDIR [train_llada2.py flags]}
shift
BUDGET_MIN=${BUDGET_MIN:-8}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
D=tools/train/data
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEADLINE=$(awk -v t="$T0" -v b="$BUDGET_MIN" 'BEGIN { printf "%.0f", t + b * 60 }')

set +e
{
  set -e
  echo "== mosaic-moe-tiny: $(date -u '+%F %T UTC') on ${HOSTNAME:-host}, budget ${BUDGET_MIN} min, out $OUT"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import sys, torch, tokenizers, safetensors, numpy; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| tokenizers', tokenizers.__version__, '| safetensors', safetensors.__version__, '| numpy', numpy.__version__)"
  if [ ! -f "$D/corpus.txt" ] || [ ! -f "$D/heldout.txt" ]; then
    if command -v bible >/dev/null; then
      "$PY" tools/train/prepare_corpus.py
    else
      echo "error: $D/corpus.txt is missing and the bible program is not installed here;" \
           "run 'python3 tools/train/prepare_corpus.py' on a machine with bible-kjv and carry tools/train/data" >&2
      exit 1
    fi
  fi
  sha256sum "$D/corpus.txt" "$D/heldout.txt"
  if [ ! -f "$D/tokenizer/tokenizer.json" ]; then
    "$PY" tools/train/train_tokenizer.py
  fi
  sha256sum "$D/tokenizer/tokenizer.json"
  # The MoE paths against each other (a few seconds; informative: training picks its path itself).
  "$PY" tools/train/train_llada2.py --selftest || echo "== MoE self-test reported a difference (see above)"
  "$PY" tools/train/train_llada2.py --out "$OUT" --metrics "$OUT/metrics.json" --deadline-unix "$DEADLINE" "$@"
} 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "== FAILED (exit $rc) after $(( $(date +%s) - T0 )) s; log: $OUT/train.log"
  exit "$rc"
fi

"$PY" - "$OUT/metrics.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
c, t, h, r = m["model"]["config"], m["training"], m["eval_heldout"], m["eval_train_windows"]
print("== summary")
print(f"model     hidden {c['hidden_size']}, {c['num_hidden_layers']} layers ({c['first_k_dense_replace']} dense), "
      f"{c['num_experts']} experts x {c['moe_intermediate_size']} top-{c['num_experts_per_tok']} + "
      f"{c['num_shared_experts']} shared, heads {c['num_attention_heads']}/{c['num_key_value_heads']} x {c['head_dim']}, "
      f"vocab {c['vocab_size']}: {m['model']['params'] / 1e6:.2f} M params "
      f"({m['model']['active_params_per_token'] / 1e6:.2f} M active), safetensors "
      f"{m['model']['safetensors_bytes'] / 1e6:.1f} MB, MoE path {m['model']['moe_impl']}")
print(f"training  {t['steps']} steps ({t['stop_reason']}), batch {t['batch_size']} x {t['seq_len']}, "
      f"{t['tokens_seen'] / 1e6:.0f} M tokens = {t['epochs']} epochs, {t['train_seconds']} s, "
      f"{t['tokens_per_second'] / 1e6:.2f} M tokens/s, final train loss {t['final_train_loss']:.4f}")
print(f"held-out  diffusion loss {h['diffusion_loss']:.4f} nats/token (unigram CE "
      f"{m['data']['heldout_ce_under_train_unigram']}), masked CE {h['masked_ce']:.4f}, "
      f"masked acc {h['masked_accuracy']:.4f} (per t: {h['masked_accuracy_per_t']})")
print(f"train win diffusion loss {r['diffusion_loss']:.4f}, masked acc {r['masked_accuracy']:.4f}")
for s in m["expert_load"]["heldout_eval_exported"]:
    print(f"routing   layer {s['layer']}: max/mean {s['max_over_mean']}, min/mean {s['min_over_mean']}, "
          f"experts used {s['fraction_used']:.2f}")
print(f"export    {m['export_check']}")
for s in m["samples"]:
    if "error" in s:
        print(f"--- sample failed: {s['error']}")
        continue
    print(f"--- {s['prompt']!r} (gen {s['gen_length']}, block {s['block_length']}, {s['steps']} steps/block, "
          f"nfe {s['nfe']})\n{s['prompt']}{s['text']}")
print(f"device    {m['env']['device']}, torch {m['env']['torch']}; wall {m['wall_seconds']} s")
PYEOF
ls -la "$OUT"
du -sh "$OUT"
echo "== done in $(( $(date +%s) - T0 )) s"
