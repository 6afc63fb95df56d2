"""Write the cached-decoding goldens (deterministic, byte-identical on rerun; CPU; ~15 s):

    PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_cache_fixtures.py

tests/fixtures/llada_tiny/cache_goldens.json   cached_generate.generate_llada_cached cases (LLADA_CASES)
tests/fixtures/dream_tiny/cache_goldens.json   cached_generate.generate_dream_cached cases (DREAM_CASES)

Needs the fixtures of make_fixtures.py / make_dream_fixtures.py (weights and config), which it
only reads. Every case runs in float64 over the bf16 weights, must have min_margin > 1e-5 (the
first prompt / seed above 1e-4 wins, else the best above 1e-5) and must give the same tokens in
float32. Sanity checks (printed, and asserted where they must hold):
  * cache none without threshold reproduces the existing goldens.json of both families;
  * a cached forward right after the store equals the full forward (cached_generate.self_test);
  * the caches change the output in some cases (against cache none with the same options), and
    sparse differs from dual in some case: otherwise a cache would not be in use;
  * one step per block: LLaDA's prefix / dual / sparse equal none (the store step commits the
    whole block); Dream's cached schedule needs >= 2 steps per block and is refused.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cached_generate as cg  # noqa: E402
from dream import Dream  # noqa: E402
from llada import LLaDA  # noqa: E402
from make_fixtures import FIX  # noqa: E402

LLADA_DIR = os.path.join(FIX, "llada_tiny")
DREAM_DIR = os.path.join(FIX, "dream_tiny")
MIN_MARGIN = 1e-5          # a case below this is refused
PREFERRED_MARGIN = 1e-4    # tries stop at the first case above this
SEEDS = 6                  # stochastic cases: each prompt with seeds seed .. seed + SEEDS - 1

# Fixed token-id prompts (10-20 tokens). LLaDA: ids < 394 (the BPE tokens, no specials);
# "m": with mask ids (399) inside the prompt. Dream: bos 497 first, ids < 497.
LLADA_PROMPTS = [
    [302, 328, 48, 235, 31, 113, 174, 16, 231, 383],
    [122, 371, 274, 141, 53, 309, 157, 232, 244, 115, 144, 363, 305],
    [174, 63, 213, 230, 95, 324, 112, 117, 34, 269, 254, 182, 137, 351, 316, 222],
    [217, 123, 29, 88, 283, 71, 213, 338, 206, 337, 126, 40, 38, 113, 232, 260, 240, 276, 318],
    [277, 330, 134, 272, 104, 85, 73, 49, 258, 147, 70],
    [109, 251, 390, 390, 277, 38, 253, 199, 189, 156, 104, 81, 269, 348],
    [216, 387, 170, 15, 81, 48, 313, 182, 78, 379, 93, 54, 38, 128, 101, 75, 277],
    [41, 255, 358, 188, 323, 198, 113, 289, 213, 193, 167, 30, 14, 163, 64, 389, 391, 65, 167, 321],
]
LLADA_MASKED_PROMPTS = [
    [302, 328, 399, 235, 31, 113, 174, 399, 231, 383, 50, 61],
    [122, 371, 274, 399, 53, 309, 157, 232, 399, 115, 144, 363, 305],
    [174, 63, 213, 230, 399, 324, 112, 117, 34, 269, 399, 182, 137, 351],
]
DREAM_PROMPTS = [
    [497, 414, 61, 296, 39, 143, 220, 21, 292, 483],
    [497, 468, 346, 178, 67, 390, 198, 293, 307, 146, 181, 458, 385],
    [497, 79, 269, 291, 120, 409, 142, 147, 43, 340, 321, 230, 173, 443, 398, 280],
    [497, 155, 37, 111, 357, 90, 269, 427, 260, 426, 160, 51, 48, 143, 293, 328, 303, 348, 401],
    [497, 416, 169, 343, 131, 107, 92, 62, 326, 186, 89],
    [497, 317, 492, 492, 349, 48, 319, 251, 238, 197, 131, 102, 339, 439],
    [497, 488, 214, 20, 103, 61, 394, 230, 99, 479, 118, 68, 48, 161, 128, 95, 350],
    [497, 322, 452, 237, 407, 249, 142, 365, 269, 244, 211, 38, 17, 206, 81, 491, 493, 83, 210, 405],
]

# LLaDA tiny's confidences are ~0.02-0.04 (400+ logit columns of a random model): its thresholds
# sit there so that several tokens commit in some steps and one in others.
LLADA_CASES = [
    # name, prompts, gen, steps, block, temperature, cfg, remasking, seed, cache, threshold, keep, kernel
    ("none_greedy",             "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "none", None, 0.5, 3),
    ("prefix_greedy",           "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "prefix", None, 0.5, 3),
    ("dual_greedy",             "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "dual", None, 0.5, 3),
    ("sparse_greedy",           "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "sparse", None, 0.5, 3),
    ("prefix_half_steps",       "p", 24, 12, 8, 0.0, 0.0, "low_confidence", 0, "prefix", None, 0.5, 3),
    ("dual_half_steps",         "p", 32, 16, 8, 0.0, 0.0, "low_confidence", 0, "dual", None, 0.5, 3),
    ("sparse_half_steps",       "p", 24, 12, 8, 0.0, 0.0, "low_confidence", 0, "sparse", None, 0.5, 3),
    ("none_threshold",          "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "none", 0.028, 0.5, 3),
    ("prefix_threshold",        "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "prefix", 0.028, 0.5, 3),
    ("dual_threshold",          "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "dual", 0.026, 0.5, 3),
    ("sparse_threshold",        "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "sparse", 0.027, 0.5, 3),
    ("dual_gumbel",             "p", 24, 24, 8, 0.7, 0.0, "low_confidence", 3, "dual", None, 0.5, 3),
    ("sparse_gumbel_threshold", "p", 24, 24, 8, 0.5, 0.0, "low_confidence", 5, "sparse", 0.02, 0.5, 3),
    ("prefix_random_remask",    "p", 24, 12, 8, 0.0, 0.0, "random", 11, "prefix", None, 0.5, 3),
    ("dual_cfg",                "p", 24, 24, 8, 0.0, 1.5, "low_confidence", 0, "dual", None, 0.5, 3),
    ("sparse_cfg",              "p", 24, 12, 8, 0.0, 1.0, "low_confidence", 0, "sparse", None, 0.5, 3),
    ("dual_cfg_threshold",      "p", 24, 24, 8, 0.0, 0.5, "low_confidence", 0, "dual", 0.03, 0.5, 3),
    ("sparse_keep0.7_kernel5",  "p", 32, 32, 8, 0.0, 0.0, "low_confidence", 0, "sparse", None, 0.7, 5),
    ("sparse_kernel1",          "p", 32, 16, 8, 0.0, 0.0, "low_confidence", 0, "sparse", None, 0.5, 1),
    ("prefix_mask_in_prompt",   "m", 24, 24, 8, 0.0, 0.0, "low_confidence", 0, "prefix", None, 0.5, 3),
    ("sparse_mask_in_prompt",   "m", 24, 12, 8, 0.0, 0.0, "low_confidence", 0, "sparse", 0.03, 0.5, 3),
]

DREAM_CASES = [
    # name, prompts, gen, steps, block, alg, temperature, top_p, top_k, alg_temp, eps, seed, cache, threshold,
    # keep, kernel
    ("none_entropy",             32, 16, 8, "entropy", 0.0, None, None, None, 1e-3, 0, "none", None, 0.5, 3),
    ("prefix_entropy",           32, 16, 8, "entropy", 0.0, None, None, None, 1e-3, 0, "prefix", None, 0.5, 3),
    ("dual_maskgit_plus",        32, 16, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "dual", None, 0.5, 3),
    ("sparse_topk_margin",       32, 16, 8, "topk_margin", 0.0, None, None, None, 1e-3, 0, "sparse", None, 0.5, 3),
    ("prefix_topk_margin_top_k", 24, 24, 8, "topk_margin", 0.0, None, 8, None, 1e-3, 0, "prefix", None, 0.5, 3),
    ("dual_entropy_full_steps",  24, 24, 8, "entropy", 0.0, None, None, None, 1e-2, 0, "dual", None, 0.5, 3),
    ("sparse_maskgit_plus",      24, 12, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "sparse", None, 0.5, 3),
    ("none_threshold",           32, 16, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "none", 0.4, 0.5, 3),
    ("prefix_threshold",         32, 16, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "prefix", 0.3, 0.5, 3),
    ("dual_threshold",           32, 16, 8, "entropy", 0.0, None, None, None, 1e-3, 0, "dual", 0.35, 0.5, 3),
    ("sparse_threshold",         32, 16, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "sparse", 0.35, 0.5, 3),
    ("dual_t0.5_top_p",          32, 16, 8, "maskgit_plus", 0.5, 0.9, None, None, 1e-3, 4, "dual", None, 0.5, 3),
    ("sparse_t0.7_threshold",    24, 12, 8, "maskgit_plus", 0.7, None, None, None, 1e-3, 5, "sparse", 0.4, 0.5, 3),
    ("prefix_alg_temp0.5",       32, 16, 8, "entropy", 0.0, None, None, 0.5, 1e-3, 7, "prefix", None, 0.5, 3),
    ("sparse_keep0.7_kernel5",   32, 16, 8, "entropy", 0.0, None, None, None, 1e-3, 0, "sparse", None, 0.7, 5),
    ("sparse_kernel1",           32, 16, 8, "maskgit_plus", 0.0, None, None, None, 1e-3, 0, "sparse", None, 0.5, 1),
]


# ----------------------------------------------------------------------------- running a case
def llada_opts(c) -> dict:
    name, pk, gen, steps, blk, temp, cfgs, rm, seed, cache, th, keep, kern = c
    return dict(gen_length=gen, steps=steps, block_length=blk, temperature=temp, cfg_scale=cfgs, remasking=rm,
                seed=seed, cache=cache, threshold=th, sparse_keep=keep, sparse_kernel=kern)


def dream_opts(c) -> dict:
    name, gen, steps, blk, alg, temp, top_p, top_k, alg_temp, eps, seed, cache, th, keep, kern = c
    return dict(gen_length=gen, steps=steps, block_length=blk, alg=alg, temperature=temp, top_p=top_p, top_k=top_k,
                alg_temp=alg_temp, eps=eps, seed=seed, cache=cache, threshold=th, sparse_keep=keep,
                sparse_kernel=kern)


def run_llada(m, prompt, o):
    return cg.generate_llada_cached(m, prompt, o["steps"], o["gen_length"], o["block_length"], o["temperature"],
                                    o["cfg_scale"], o["remasking"], o["seed"], o["cache"], o["threshold"],
                                    o["sparse_keep"], o["sparse_kernel"])


def run_dream(m, prompt, o):
    return cg.generate_dream_cached(m, prompt, o["gen_length"], o["steps"], o["block_length"], o["alg"], o["eps"],
                                    o["temperature"], o["top_p"], o["top_k"], o["alg_temp"], o["seed"], o["cache"],
                                    o["threshold"], o["sparse_keep"], o["sparse_kernel"])


def stochastic(o) -> bool:
    return o.get("temperature", 0) > 0 or o.get("remasking") == "random" or bool(o.get("alg_temp"))


def pick(name, run, m64, m32, prompts, o):
    """The first (prompt, seed) whose float64 run has min_margin > PREFERRED_MARGIN and the same
    tokens in float32; failing that the one with the largest margin above MIN_MARGIN."""
    seeds = [o["seed"] + s for s in range(SEEDS)] if stochastic(o) else [o["seed"]]
    fallback, notes = [], []

    def verify(prompt, oo, r):
        r32 = run(m32, prompt, oo)
        if r32.tokens != r.tokens:
            notes.append(f"prompt {prompt} seed {oo['seed']}: float32 differs")
            return None
        return prompt, oo, r

    for prompt in prompts:
        for seed in seeds:
            oo = dict(o, seed=seed)
            r = run(m64, prompt, oo)
            if r.min_margin > PREFERRED_MARGIN:
                ok = verify(prompt, oo, r)
                if ok:
                    return ok
            elif r.min_margin > MIN_MARGIN:
                fallback.append((prompt, oo, r))
            else:
                notes.append(f"prompt #{prompts.index(prompt)} seed {seed}: margin {r.min_margin:.2e}")
    for prompt, oo, r in sorted(fallback, key=lambda f: -f[2].min_margin):
        ok = verify(prompt, oo, r)
        if ok:
            return ok
    raise SystemExit(f"case {name}: no prompt/seed gives min_margin > {MIN_MARGIN} with identical float32 "
                     "tokens: " + "; ".join(notes))


def trace(r) -> list:
    """Per forward: block, step in block, global step (noise counter), kind, rows [begin, end),
    candidates, committed positions (selection order)."""
    return [{"block": s.block, "step": s.step, "global_step": s.global_step, "kind": s.kind,
             "rows": list(s.rows), "n": s.n, "positions": s.positions} for s in r.steps]


def build(family, cases, opts, run, m64, m32, prompts_of, mask):
    """Run every case; returns (golden case dicts, table rows)."""
    out, rows = [], []
    for c in cases:
        name = c[0]
        o = opts(c)
        prompt, o, r = pick(name, run, m64, m32, prompts_of(c), o)
        if mask not in prompt:   # (masks in the prompt take some of the schedule's commits, as generate.py)
            assert mask not in r.tokens[len(prompt):], f"{family} {name}: masks left"
        kinds = {s.kind for s in r.steps}
        assert ("cached" in kinds) == (o["cache"] != "none"), f"{family} {name}: step kinds {kinds}"
        none = r if o["cache"] == "none" else run(m64, prompt, dict(o, cache="none"))
        dual = run(m64, prompt, dict(o, cache="dual")) if o["cache"] == "sparse" else None
        out.append({"name": name, "prompt_tokens": prompt, **{k: v for k, v in o.items()},
                    "output_tokens": r.tokens, "nfe": r.nfe, "min_margin": float(f"{r.min_margin:.6g}"),
                    "trace": trace(r)})
        rows.append(dict(name=name, cache=o["cache"], threshold=o["threshold"], nfe=r.nfe, margin=r.min_margin,
                         sel=r.selection_margin, differs_none=r.tokens != none.tokens,
                         differs_dual=None if dual is None else r.tokens != dual.tokens,
                         ks=[len(s.positions) for s in r.steps], seed=o["seed"],
                         ties=f"{r.boundary_ties}/{r.selections}" if r.selections else "-",
                         prompt=prompts_of(c).index(prompt)))
    return out, rows


def write(path, description, regenerate, mask, cases):
    golden = {"description": description, "regenerate": regenerate, "mask_token_id": mask, "cases": cases}
    with open(path, "w") as f:
        json.dump(golden, f, indent=1, allow_nan=False)
        f.write("\n")
    os.chmod(path, 0o644)


def table(family, rows):
    print(f"\n{family}: {len(rows)} cases (pr: which prompt; d_none / d_dual: output differs from cache none / "
          "dual with the same options; ties: sparse selections settled by the position tie-break / all)")
    hdr = (f"{'case':26s} {'cache':6s} {'thr':>6s} {'pr':>2s} {'seed':>4s} {'nfe':>4s} {'min_margin':>10s} "
           f"{'sel_margin':>10s} {'ties':>5s} {'d_none':>6s} {'d_dual':>6s}  k per forward")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        th = "-" if r["threshold"] is None else f"{r['threshold']:g}"
        sel = "-" if math.isinf(r["sel"]) else f"{r['sel']:.3e}"
        dd = "-" if r["differs_dual"] is None else ("yes" if r["differs_dual"] else "no")
        print(f"{r['name']:26s} {r['cache']:6s} {th:>6s} {r['prompt']:2d} {r['seed']:4d} {r['nfe']:4d} "
              f"{r['margin']:10.3e} {sel:>10s} {r['ties']:>5s} {'yes' if r['differs_none'] else 'no':>6s} {dd:>6s}  {r['ks']}")
    for mode in cg.CACHES[1:]:
        sel = [r for r in rows if r["cache"] == mode]
        print(f"  {mode:6s}: {sum(r['differs_none'] for r in sel)} of {len(sel)} cases differ from cache none")
    sp = [r for r in rows if r["cache"] == "sparse"]
    print(f"  sparse vs dual: {sum(r['differs_dual'] for r in sp)} of {len(sp)} sparse cases differ from dual")


def check_sanity(family, rows):
    for mode in ("prefix", "dual", "sparse"):
        if not any(r["differs_none"] for r in rows if r["cache"] == mode):
            raise SystemExit(f"{family}: no {mode} case differs from cache none: is the cache in use?")
    if not any(r["differs_dual"] for r in rows if r["cache"] == "sparse"):
        raise SystemExit(f"{family}: no sparse case differs from dual")


# ----------------------------------------------------------------------------- checks
def check_existing_goldens(ml, md):
    """cache none, no threshold == the existing goldens.json of each family (tokens)."""
    n = 0
    with open(os.path.join(LLADA_DIR, "goldens.json")) as f:
        for c in json.load(f)["cases"]:
            r = cg.generate_llada_cached(ml, c["prompt_tokens"], c["steps"], c["gen_length"], c["block_length"],
                                         c["temperature"], c["cfg_scale"], c["remasking"], c["seed"])
            assert r.tokens == c["output_tokens"], f"llada {c['name']}: cache none differs from goldens.json"
            n += 1
    with open(os.path.join(DREAM_DIR, "goldens.json")) as f:
        for c in json.load(f)["cases"]:
            r = cg.generate_dream_cached(md, c["prompt_tokens"], c["gen_length"], c["steps"], c["block_length"],
                                         c["alg"], c["eps"], c["temperature"], c["top_p"], c["top_k"], c["alg_temp"],
                                         c["seed"])
            assert r.tokens == c["output_tokens"], f"dream {c['name']}: cache none differs from goldens.json"
            n += 1
    return n


def check_one_step_per_block(ml, md):
    """LLaDA: with one step per block the store step commits the whole block, so prefix / dual /
    sparse give cache none's tokens. Dream: the cached schedule needs >= 2 steps per block."""
    p = LLADA_PROMPTS[0]
    base = cg.generate_llada_cached(ml, p, 4, 32, 8, cache="none")
    for mode in ("prefix", "dual", "sparse"):
        r = cg.generate_llada_cached(ml, p, 4, 32, 8, cache=mode)
        assert r.tokens == base.tokens and r.nfe == 4, f"llada {mode} with 1 step per block"
        assert all(s.kind != "cached" for s in r.steps)
    for mode in ("prefix", "dual", "sparse"):
        try:
            cg.generate_dream_cached(md, DREAM_PROMPTS[0], 32, 4, 8, "entropy", cache=mode)
        except ValueError:
            continue
        raise AssertionError(f"dream {mode} with 1 step per block was not refused")
    for bad in (dict(cache="dual", alg="origin"), dict(cache="sparse", sparse_kernel=4),
                dict(cache="none", threshold=0.2, alg_temp=0.5), dict(cache="lru")):
        kw = dict(alg="entropy", **bad) if "alg" not in bad else bad
        try:
            cg.generate_dream_cached(md, DREAM_PROMPTS[0], 32, 16, 8, **kw)
        except ValueError:
            continue
        raise AssertionError(f"dream {bad} was not refused")


def main():
    t0 = time.time()
    ml64, ml32 = LLaDA.from_pretrained(LLADA_DIR, "float64"), LLaDA.from_pretrained(LLADA_DIR, "float32")
    md64, md32 = Dream.from_pretrained(DREAM_DIR, "float64"), Dream.from_pretrained(DREAM_DIR, "float32")
    st = {f: cg.self_test(m) for f, m in (("llada", ml64), ("dream", md64))}
    n_old = check_existing_goldens(ml64, md64)
    check_one_step_per_block(ml64, md64)

    lcases, lrows = build("llada", LLADA_CASES, llada_opts, run_llada, ml64, ml32,
                          lambda c: LLADA_MASKED_PROMPTS if c[1] == "m" else LLADA_PROMPTS, ml64.mask_token_id)
    dcases, drows = build("dream", DREAM_CASES, dream_opts, run_dream, md64, md32, lambda c: DREAM_PROMPTS,
                          md64.mask_token_id)
    regen = "PYTHONPATH=/usr/lib/python3/dist-packages python3 tools/reference/make_cache_fixtures.py"
    common = ("computed in float64 over the bf16 weights (float32 gives the same tokens). Noise: "
              "tools/reference/noise.py counter uniforms, step = the global step-loop counter, pos = absolute "
              "position; ties -> lower position. cache: none | prefix | dual | sparse (sparse_keep, sparse_kernel: "
              "Sparse-dLLM's keep ratio and max-pool kernel); threshold: null = the step schedule, else Fast-dLLM's "
              "confidence threshold. output_tokens is the full final sequence, prompt included; nfe = forwards "
              "(a guidance step counts once); min_margin = the smallest decision or sparse-selection gap; trace = "
              "one record per forward (kind full | store | cached, rows [begin, end), n candidates, committed "
              "positions). See tools/reference/README.md, 'Cached decoding'.")
    write(os.path.join(LLADA_DIR, "cache_goldens.json"),
          "LLaDA cached-decoding goldens for tests/fixtures/llada_tiny, by tools/reference/cached_generate.py "
          "generate_llada_cached, " + common, regen, ml64.mask_token_id, lcases)
    write(os.path.join(DREAM_DIR, "cache_goldens.json"),
          "Dream cached-decoding goldens for tests/fixtures/dream_tiny, by tools/reference/cached_generate.py "
          "generate_dream_cached, " + common, regen, md64.mask_token_id, dcases)

    print("self-test (cached rows right after the store vs the full forward, max |diff|): " +
          "; ".join(f"{f} " + ", ".join(f"{k} {v:.1e}" for k, v in d.items()) for f, d in st.items()))
    print(f"cache none reproduces the {n_old} cases of both goldens.json; one step per block: LLaDA caches == none, "
          "Dream cached schedule refused")
    table("llada", lrows)
    table("dream", drows)
    check_sanity("llada", lrows)
    check_sanity("dream", drows)
    sizes = [os.path.getsize(os.path.join(d, "cache_goldens.json")) for d in (LLADA_DIR, DREAM_DIR)]
    print(f"\nwrote cache_goldens.json: llada {sizes[0] / 1024:.0f} KiB, dream {sizes[1] / 1024:.0f} KiB "
          f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
