"""Golden generations and the held-out diffusion loss of a trained model directory
(the shipped models/mosaic-tiny), computed by the reference in float64.

    PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_model_goldens.py models/mosaic-tiny

writes MODEL_DIR/goldens.json (same format as tests/fixtures/llada_tiny/goldens.json) and
MODEL_DIR/eval_reference.json (the estimate `mosaic eval` computes, same masks: the counter
noise's stream 3, t = (j + 0.5) / t_draws). Prompts are BOS + the text, as `mosaic generate`
encodes a plain prompt; the softmax is float64, as mosaic's CPU sampler.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noise  # noqa: E402
from generate import generate  # noqa: E402
from llada import LLaDA  # noqa: E402

EVAL_STREAM = 3

CASES = [
    # name, prompt, gen, steps, block, temperature, cfg, remasking, seed
    ("once_default", "Once upon a time", 128, 128, 32, 0.0, 0.0, "low_confidence", 0),
    ("blessed_2_per_step", "Blessed are the", 64, 32, 32, 0.0, 0.0, "low_confidence", 0),
    ("lord_blocks_16", "And the LORD said unto Moses,", 64, 64, 16, 0.0, 0.0, "low_confidence", 0),
    ("cfg", "In the beginning", 32, 32, 32, 0.0, 0.5, "low_confidence", 0),
    ("random_remask", "The LORD is my shepherd", 32, 32, 16, 0.0, 0.0, "random", 7),
    ("gumbel", "Blessed are the", 32, 16, 16, 0.8, 0.0, "low_confidence", 3),
]


def bos_plus(tok, cfg, text):
    return [cfg["bos_token_id"]] + tok.encode(text, add_special_tokens=False).ids


def eval_loss(m, tokens, bos, mask_id, seq_len, t_draws, max_windows, seed):
    body = seq_len - 1
    windows = min(max_windows, len(tokens) // body)
    loss = ce_sum = 0.0
    masked = correct = 0
    for w in range(windows):
        x0 = torch.tensor([bos] + tokens[w * body:(w + 1) * body], dtype=torch.long)
        for j in range(t_draws):
            t = (j + 0.5) / t_draws
            u = noise.counter_uniform(seed, EVAL_STREAM, w * t_draws + j, np.arange(seq_len, dtype=np.uint64), 0)
            pos = np.nonzero(u < t)[0]
            if len(pos) == 0:
                continue
            xt = x0.clone()
            xt[pos] = mask_id
            logits = m(xt[None])[0, torch.as_tensor(pos)].to(torch.float64)
            ce = torch.logsumexp(logits, -1) - logits[torch.arange(len(pos)), x0[pos]]
            ce_sum += float(ce.sum())
            loss += float(ce.sum()) / t / seq_len
            masked += len(pos)
            correct += int((logits.argmax(-1) == x0[pos]).sum())
    return {"windows": windows, "seq_len": seq_len, "t_draws": t_draws, "seed": seed, "masked": masked,
            "loss": loss / (windows * t_draws), "masked_ce": ce_sum / masked, "accuracy": correct / masked}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--heldout", default=None, help="held-out text (default MODEL_DIR/heldout.txt)")
    ap.add_argument("--max-windows", type=int, default=8)
    a = ap.parse_args()
    from tokenizers import Tokenizer

    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    m = LLaDA.from_pretrained(a.model_dir, "float64", "cpu")
    cases = []
    for name, text, gen, steps, block, temp, cfg_scale, remask, seed in CASES:
        prompt = bos_plus(tok, cfg, text)
        r = generate(m, prompt, steps, gen, block, temp, cfg_scale, remask, seed=seed, softmax_dtype="float64")
        cases.append({"name": name, "prompt": text, "prompt_tokens": prompt, "gen_length": gen, "steps": steps,
                      "block_length": block, "temperature": temp, "cfg_scale": cfg_scale, "remasking": remask,
                      "seed": seed, "output_tokens": r.tokens, "min_margin": r.min_margin,
                      "text": tok.decode(r.tokens[len(prompt):], skip_special_tokens=True)})
        print(f"{name:20s} margin {r.min_margin:.2e}  {cases[-1]['text'][:70]!r}")
    with open(os.path.join(a.model_dir, "goldens.json"), "w") as f:
        json.dump({"description": "reference (tools/reference, float64) generations of this model",
                   "regenerate": "PYTHONPATH=/usr/lib/python3/dist-packages python3 "
                                 "tools/reference/make_model_goldens.py " + a.model_dir,
                   "cases": cases}, f, indent=1)
        f.write("\n")
    heldout = a.heldout or os.path.join(a.model_dir, "heldout.txt")
    ids = tok.encode(open(heldout, encoding="utf-8").read(), add_special_tokens=False).ids
    ev = eval_loss(m, ids, cfg["bos_token_id"], cfg["mask_token_id"], 256, 8, a.max_windows, 0)
    ev["text"] = os.path.basename(heldout)
    with open(os.path.join(a.model_dir, "eval_reference.json"), "w") as f:
        json.dump(ev, f, indent=1)
        f.write("\n")
    print("eval", ev)


if __name__ == "__main__":
    main()
