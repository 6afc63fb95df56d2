"""Regenerate tests/fixtures/dream_tiny/ (deterministic, byte-identical on rerun; CPU; ~35 s):

    PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_dream_fixtures.py

tests/fixtures/dream_tiny/
    config.json                   Dream-7B's field set (make_checkpoint.tiny_dream): hidden 64, 2 layers,
                                  4 heads, 2 kv heads (GQA), intermediate 160, vocab 512, mask 500,
                                  bos 497, eos = pad 498, rope_theta 1e6, rms_norm_eps 1e-6, untied head
    model.safetensors             bf16, official Qwen2 names, seeded random weights; the LM head and the
                                  q/k/v biases scaled up (STD_SCALE) so that decisions are decisive
    reference_logits.safetensors  "tokens" int32 [20] (some = mask id), "logits" float32 [20, 512]: the raw
                                  forward (row i predicts token i + 1) in float64 over the bf16 weights,
                                  cast; "logits_shifted": the same shifted right by one as Dream's sampler
                                  uses them (row 0 repeated; row i predicts token i)
    goldens.json                  dream_generate.generate() cases (CASES), float64, min_margin > 1e-5; each
                                  re-run in float32 with identical tokens required, and shown not to depend
                                  on the linspace formula (same k schedule; origin: re-run under each)
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint  # noqa: E402
import noise  # noqa: E402
from dream import Dream  # noqa: E402
from dream_generate import LINSPACE_MODES, check_counts, generate, schedule  # noqa: E402
from make_fixtures import FIX, fresh  # noqa: E402

OUT = os.path.join(FIX, "dream_tiny")
WEIGHT_SEED = 20250402
# Larger LM head -> logits with std ~4 (peaked but rarely one-token distributions);
# q/k/v biases std 0.5 instead of 0.02 (clearly non-zero, so a missing bias shows).
STD_SCALE = {"head": 4.0, "bias": 25.0}
MIN_MARGIN = 1e-5         # a case below this is refused
PREFERRED_MARGIN = 1e-4   # tries stop at the first case above this
TRIES = 8           # stochastic cases: each prompt with seeds seed .. seed + TRIES - 1; greedy: the prompts

PROMPTS = {
    "issue": [[1, 2, 3]],
    "a": [[497, 72, 305, 18, 229, 41], [497, 150, 9, 377, 64], [497, 260, 14, 88, 411, 7, 333],
          [497, 33, 480, 121], [497, 5, 6, 7, 8, 9, 10]],
    "b": [[497, 201, 45, 390, 12, 77, 160, 8], [497, 99, 310, 4], [497, 250, 251, 17, 60],
          [497, 440, 2, 198], [497, 11, 12, 13]],
}

CASES = [
    # name, prompts, gen, steps, block, alg, temperature, top_p, top_k, alg_temp, eps, seed
    ("issue_entropy_greedy",       "issue", 32, 16, 32, "entropy", 0.0, None, None, None, 1e-3, 0),
    ("maskgit_plus_greedy",        "a", 32, 16, 32, "maskgit_plus", 0.0, None, None, None, 1e-3, 0),
    ("maskgit_plus_top_p",         "a", 16, 8, 16, "maskgit_plus", 0.0, 0.9, None, None, 1e-3, 0),
    ("maskgit_plus_top_k",         "a", 32, 16, 32, "maskgit_plus", 0.0, None, 8, None, 1e-3, 0),
    ("topk_margin_greedy",         "b", 32, 16, 32, "topk_margin", 0.0, None, None, None, 1e-3, 0),
    ("topk_margin_top_p",          "b", 16, 8, 16, "topk_margin", 0.0, 0.9, None, None, 1e-3, 0),
    ("topk_margin_top_k",          "b", 32, 16, 32, "topk_margin", 0.0, None, 8, None, 1e-3, 0),
    ("entropy_greedy_eps1e-2",     "a", 32, 8, 32, "entropy", 0.0, None, None, None, 1e-2, 0),
    ("entropy_top_p",              "b", 16, 8, 16, "entropy", 0.0, 0.9, None, None, 1e-3, 0),
    ("entropy_top_k",              "a", 32, 16, 32, "entropy", 0.0, None, 8, None, 1e-3, 0),
    ("entropy_blocks",             "a", 32, 16, 8, "entropy", 0.0, None, None, None, 1e-3, 0),
    ("maskgit_plus_blocks_eps1e-2", "b", 24, 12, 8, "maskgit_plus", 0.0, None, None, None, 1e-2, 0),
    ("topk_margin_few_steps",      "a", 32, 4, 32, "topk_margin", 0.0, None, None, None, 1e-3, 0),
    ("origin_greedy",              "a", 32, 16, 32, "origin", 0.0, None, None, None, 1e-3, 1),
    ("origin_t0.7",                "b", 32, 16, 32, "origin", 0.7, None, None, None, 1e-3, 2),
    ("origin_blocks_t0.7_top_p",   "a", 16, 8, 8, "origin", 0.7, 0.95, None, None, 1e-3, 3),
    ("maskgit_plus_t0.5",          "a", 32, 16, 32, "maskgit_plus", 0.5, None, None, None, 1e-3, 4),
    ("entropy_t0.7_top_p0.9",      "b", 32, 16, 32, "entropy", 0.7, 0.9, None, None, 1e-3, 5),
    ("topk_margin_t1_top_k",       "a", 32, 16, 16, "topk_margin", 1.0, None, 16, None, 1e-3, 6),
    ("entropy_alg_temp0.5",        "b", 32, 16, 32, "entropy", 0.0, None, None, 0.5, 1e-3, 7),
    ("maskgit_plus_t0.5_alg_temp", "a", 32, 16, 16, "maskgit_plus", 0.5, None, None, 1.0, 1e-2, 8),
]


def run_case(m, prompt, c, seed, linspace_mode="fma"):
    _, _, gen, steps, blk, alg, temp, top_p, top_k, alg_temp, eps, _ = c
    return generate(m, prompt, gen, steps, blk, alg, eps, temp, top_p, top_k, alg_temp, seed,
                    linspace_mode=linspace_mode)


def main():
    t0 = time.time()
    noise.self_test(verbose=False)
    checked = check_counts(n_max=64, steps_list=(2, 4, 8, 16), eps_list=(1e-3, 1e-2))
    fresh(OUT)

    # --- config + weights
    cfg = make_checkpoint.tiny_dream()
    make_checkpoint.write(cfg, OUT, seed=WEIGHT_SEED, dtype="bf16", log=None, std_scale=STD_SCALE)
    mask = cfg["mask_token_id"]
    V = cfg["vocab_size"]
    m64 = Dream.from_pretrained(OUT, "float64")
    m32 = Dream.from_pretrained(OUT, "float32")
    bias = m64.t["model.layers.0.self_attn.q_proj.bias"]
    assert float(bias.abs().mean()) > 0.1, "q/k/v biases should be clearly non-zero"

    # --- reference logits (raw and shifted)
    from safetensors.torch import save_file

    tokens = [497, 72, 305, 18, 229, 500, 41, 150, 9, 377, 64, 500, 260, 14, 88, 411, 7, 500, 500, 500]
    assert len(tokens) == 20 and tokens.count(mask) == 5
    x = torch.tensor([tokens])
    raw = m64(x, shift=False)[0]
    shifted = m64(x)[0]
    assert torch.equal(shifted[1:], raw[:-1]) and torch.equal(shifted[0], raw[0])
    d32 = float((m32(x, shift=False)[0].double() - raw).norm() / raw.norm())
    save_file({"tokens": torch.tensor(tokens, dtype=torch.int32),
               "logits": raw.to(torch.float32).contiguous(),
               "logits_shifted": shifted.to(torch.float32).contiguous()},
              os.path.join(OUT, "reference_logits.safetensors"), metadata={"format": "pt"})
    p1 = torch.softmax(raw, -1).max(-1).values
    logit_std = float(raw.std())

    # --- goldens
    cases, rows = [], []
    for c in CASES:
        name, pk, gen, steps, blk, alg, temp, top_p, top_k, alg_temp, eps, seed0 = c
        stochastic = temp > 0 or alg == "origin" or (alg_temp or 0) > 0
        tries = [(p, seed0 + s) for p in PROMPTS[pk] for s in range(TRIES)] if stochastic \
            else [(p, seed0) for p in PROMPTS[pk]]
        if pk == "issue":
            tries = tries[:1]
        # The first try with a comfortable margin (> PREFERRED_MARGIN) wins; failing that, the
        # try with the largest margin above MIN_MARGIN. Either must give the same tokens in
        # float32 and under every linspace formula.
        ok, notes, fallback = None, [], []

        def verify(prompt, seed, r):
            r32 = run_case(m32, prompt, c, seed)
            if r32.tokens != r.tokens:
                notes.append(f"prompt {prompt} seed {seed}: float32 differs")
                return None
            # The confidence algorithms use the timesteps only through k (the schedule check
            # below); origin compares each uniform with 1 - s/t: re-run it under every formula.
            if alg == "origin" and any(run_case(m64, prompt, c, seed, mode).tokens != r.tokens
                                       for mode in LINSPACE_MODES if mode != "fma"):
                notes.append(f"prompt {prompt} seed {seed}: a linspace formula changes the tokens")
                return None
            return (prompt, seed, r, r32)

        for prompt, seed in tries:
            r = run_case(m64, prompt, c, seed)
            if r.min_margin > PREFERRED_MARGIN:
                ok = verify(prompt, seed, r)
                if ok:
                    break
            elif r.min_margin > MIN_MARGIN:
                fallback.append((prompt, seed, r))
            else:
                notes.append(f"prompt {prompt} seed {seed}: margin {r.min_margin:.2e}")
        if ok is None:
            for prompt, seed, r in sorted(fallback, key=lambda f: -f[2].min_margin):
                ok = verify(prompt, seed, r)
                if ok:
                    break
        if ok is None:
            raise SystemExit(f"case {name}: no prompt/seed gives min_margin > {MIN_MARGIN} with identical "
                             "float32 tokens: " + "; ".join(notes))
        prompt, seed, r, r32 = ok
        new = r.tokens[len(prompt):]
        assert mask not in new, f"case {name}: masks left"
        if alg != "origin":
            ks = schedule(blk, steps // (gen // blk), eps, "fma")
            assert all(schedule(blk, steps // (gen // blk), eps, mode) == ks for mode in LINSPACE_MODES), name
        cases.append({
            "name": name, "prompt_tokens": prompt, "gen_length": gen, "steps": steps, "block_length": blk,
            "alg": alg, "temperature": temp, "top_p": top_p, "top_k": top_k, "alg_temp": alg_temp,
            "eps": eps, "seed": seed, "output_tokens": r.tokens, "min_margin": float(f"{r.min_margin:.6g}"),
        })
        ks_seen = [s.k for s in r.steps]
        rows.append((name, PROMPTS[pk].index(prompt), gen, steps, blk, alg, temp, top_p, top_k, alg_temp, eps,
                     seed, r.min_margin, r32.tokens == r.tokens, len(set(new)), ks_seen))

    golden = {
        "description": "Dream generation_utils.py _sample goldens for tests/fixtures/dream_tiny, computed by "
                       "tools/reference/dream_generate.py in float64 over the bf16 weights (float32 gives the "
                       "same tokens). Noise: tools/reference/noise.py counter uniforms (token draw: stream 1, "
                       "col = vocab id; origin: stream 4; alg_temp: stream 5; step = global step, pos = "
                       "absolute position); top-k ties -> lower position; timesteps: the float32 linspace "
                       "formula (every formula gives the same tokens). block_length < gen_length: the "
                       "block-wise variant (timesteps restart per block, candidates = the block's masks). "
                       "output_tokens is the full final sequence, prompt included. min_margin: smallest "
                       "decision gap over all steps (see dream_generate.py).",
        "regenerate": "PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_dream_fixtures.py",
        "mask_token_id": mask,
        "cases": cases,
    }
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump(golden, f, indent=1, allow_nan=False)
        f.write("\n")
    for fn in os.listdir(OUT):   # safetensors writes 0600 files; fixtures are plain readable files
        os.chmod(os.path.join(OUT, fn), 0o644)

    # --- report
    print(f"config: vocab {V}, mask {mask}, bos {cfg['bos_token_id']}, eos/pad {cfg['eos_token_id']}, "
          f"std scale {STD_SCALE}")
    print(f"reference logits: tokens {tokens}")
    print(f"  logit std {logit_std:.2f}; top-1 prob median {float(p1.median()):.3f} max {float(p1.max()):.3f}; "
          f"fp32 vs fp64 relative error {d32:.2e}")
    print(f"transfer counts: numpy float32 == the official torch expression in {checked} cases")
    hdr = (f"{'case':28s} {'pr':>2s} {'gen':>3s} {'st':>3s} {'blk':>3s} {'alg':12s} {'T':>3s} {'top_p':>5s} {'top_k':>5s} "
           f"{'a_tmp':>5s} {'eps':>6s} {'seed':>4s} {'min_margin':>10s} {'fp32':>5s} {'dist':>4s}  k per step")
    print(hdr)
    print("-" * len(hdr))
    # pr: which of the case's PROMPTS (0 = the first); fp32: the float32 run's tokens; dist: distinct new tokens
    for (n, pi, g, st, b, alg, t, tp, tk, at, eps, s, mm, same, dist, ks) in rows:
        print(f"{n:28s} {pi:2d} {g:3d} {st:3d} {b:3d} {alg:12s} {t:3.1f} {str(tp):>5s} {str(tk):>5s} {str(at):>5s} "
              f"{eps:6.0e} {s:4d} {mm:10.3e} {'same' if same else 'DIFF':>5s} {dist:4d}  {ks}")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"fixtures: {total / 1024:.0f} KiB in {OUT} ({time.time() - t0:.1f} s)")
    if total >= 1 << 20:
        raise SystemExit("fixtures exceed 1 MiB")


if __name__ == "__main__":
    main()
