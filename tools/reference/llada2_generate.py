"""LLaDA2.0's official `generate()` (LLaDA2MoeModelLM.generate in the HF modeling_llada2_moe.py of
inclusionAI/LLaDA2.0-mini), reproduced step for step, plus an exact prefix-KV-cache variant.

    steps = min(steps, gen_length // minimal_topk)                  steps PER BLOCK
    nb = ceil((P + gen_length) / B); x = [prompt, mask * (nb B - P)]  blocks are absolute: [b B, (b+1) B)
    schedule = B // steps each, the first B % steps get +1           (from block_length, not the masks)
    for b in P // B .. nb - 1:                                        the prompt's last partial block is
        window = x[:(b+1) B], attention block-causal                   generated too (its masks only)
        for step in 0 .. steps - 1:
            active = window[-B:] == mask;  if none: break             (checked before the forward)
            logits = model(window)[-B:]                               float32 (float64 here in fp64 runs)
            x0, p = sample(logits)                                    T == 0: argmax, p = softmax[x0]
                                                                      else logits / T (T != 1), top_k, top_p,
                                                                      softmax, draw, p = probs[x0]
            conf = p on active rows, -inf elsewhere
            high = conf > threshold
            if count(high) >= schedule[step]: commit all high          (may exceed the schedule)
            else: commit the top-min(schedule[step], #active) by conf
            if eos_early_stop and a committed x0 is eos: e = first eos in window (from position 0);
                if no mask in x[P:e]: return x[P:e+1]
        if eos in x[P:(b+1) B]: break                                 (always, not only with eos_early_stop)
    answer = x[P:P+gen_length] cut after its first eos (inclusive)

Deviations from the official code (on purpose; see tools/reference/README.md):
  * Greedy: the HF LLaDA2.0 `_sample_with_temperature_topk_topp` always draws with torch.multinomial,
    so temperature 0 samples at T = 1 (inclusionAI/LLaDA2.X issue #6; fixed in the LLaDA2.1 modeling
    file, in dllm, and TIDE's do_sample=False). Here temperature 0 is argmax (first max), conf =
    softmax(logits)[argmax].
  * Noise: the draw is argmax_v p_v / E_v, E_v = -log u_v, u_v = noise.counter_uniform(seed, GUMBEL=1,
    g, pos, v) (= a one-sample multinomial, as dream_generate.py), p = softmax of the filtered, scaled
    logits in float64 for the draw; the confidence is probs[x0] in the run's dtype. g = the index of
    the forward in the whole generation (0-based; every forward is one step-loop iteration that ran),
    pos = the absolute position. Drawn for every active row of the block.
  * Ties: stable sorts (top-k fallback: lower position first; top_p: lower vocab id first); argmax
    takes the first max. The official topk / sort order among equal values is unspecified.
  * Early-stop return: x[P:e+1] (TIDE / dllm); the HF LLaDA2.0 code returns x[:e+1] (prompt
    included) on that path and only the generated part on the others.
  * Batch 1; no expert offload / stats (TIDE) or other hooks.

Decision margin (per forward; min_margin = the smallest over the generation):
  (a) committed rows: T == 0: top1 - top2 of the logits; T > 0: top1 - top2 of log p - log E (float64);
  (b) every active row: |conf - threshold| (the strict `>` comparison), except rows whose filter kept a
      single token (conf is exactly 1 in every dtype);
  (c) the top-k fallback: conf[k-1] - conf[k] of the sorted active rows (k < #active), unless both are
      exactly 1 (single-token filters; the tie goes to the lower position in every dtype);
  (d) T > 0, every active row: top_k: the k-th minus the (k+1)-th scaled logit; top_p: the smallest
      |cum_j - top_p| over the sorted tokens (both decide which tokens survive the filter);
  plus router_margin: the smallest routing gap of any MoE row the forward ran (llada2.py _route).

Cached variant (cache="prefix"): with block-causal attention, a position's K/V depend only on the
tokens of its block and the blocks before it, so once a block is final its K/V never change. The cache
holds the post-norm, post-rope K/V of positions [0, c). A forward runs rows [c, (b+1) B) against
[cache ; own K/V] with the block-causal mask, then stores the K/V of its rows before block b and sets
c = b B. So the first forward of block b runs block b - 1 (whose last commits it has not seen) plus
block b (the first generated block: the whole prompt prefix plus block b), every other forward block
b's B rows only. Same nfe as the official loop; the logits equal the full forward's (~1e-15 in float64).

CLI:
    python3 tools/reference/llada2_generate.py DIR --prompt-tokens 1,2,3 --gen-length 32 --block-length 8 \
        --steps 8 [--threshold 0.95] [--temperature 0] [--top-k K] [--top-p P] [--minimal-topk 1] \
        [--eos-early-stop] [--seed 0] [--dtype float64] [--cache none|prefix|both] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field, asdict
from typing import List, Optional

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noise  # noqa: E402
from llada2 import block_causal_mask  # noqa: E402


def get_num_transfer_tokens(block_length: int, steps: int) -> List[int]:
    base, rem = divmod(int(block_length), int(steps))
    return [base + (1 if i < rem else 0) for i in range(steps)]


@dataclass
class StepInfo:
    block: int
    step: int                 # within the block
    global_step: int          # g: index of this forward in the generation
    rows: List[int]           # [begin, end) of the rows the forward ran
    n_active: int
    k: int                    # schedule[step]
    path: str                 # "threshold" (all conf > threshold committed) or "topk"
    positions: List[int]      # committed, in commit order (threshold: ascending; topk: by confidence)
    margin: float
    router_margin: float


@dataclass
class Result:
    tokens: List[int]          # x when generation stopped (total_length, prompt included)
    answer: List[int]          # the official return value (generated part, up to the first eos)
    stop: str                  # "length", "eos_block" (eos in a finished block), "eos_early_stop"
    nfe: int
    min_margin: float
    min_router_margin: float
    steps: List[StepInfo] = field(default_factory=list)
    logits_trace: Optional[list] = None   # per forward: the block's logits (for cached vs uncached)


def _filter(lg: torch.Tensor, temperature: float, top_k, top_p):
    """Official order: / T (when T > 0 and T != 1), top_k, top_p; all in the logits' dtype.
    Returns the filtered logits and the per-row boundary margin (d)."""
    if temperature > 0 and temperature != 1.0:
        lg = lg / temperature
    R, V = lg.shape
    marg = torch.full((R,), math.inf, dtype=torch.float64)
    if top_k is not None and top_k > 0:
        vals = torch.sort(lg, dim=-1, descending=True).values
        kth = vals[:, top_k - 1: top_k]
        if top_k < V:
            marg = torch.minimum(marg, (vals[:, top_k - 1] - vals[:, top_k]).double())
        lg = torch.where(lg < kth, torch.full_like(lg, float("-inf")), lg)
    if top_p is not None and top_p < 1.0:
        srt = torch.sort(lg, dim=-1, descending=True, stable=True)
        cum = torch.cumsum(torch.softmax(srt.values, dim=-1), dim=-1)
        rm = cum > top_p
        rm[:, 1:] = rm[:, :-1].clone()
        rm[:, 0] = False
        fin = torch.isfinite(srt.values)
        d = (cum.double() - float(torch.tensor(top_p, dtype=cum.dtype))).abs()
        d = torch.where(fin, d, torch.full_like(d, math.inf))
        marg = torch.minimum(marg, d.min(-1).values)
        remove = torch.zeros_like(rm)
        remove.scatter_(1, srt.indices, rm)
        lg = lg.masked_fill(remove, float("-inf"))
    return lg, marg


def sample_rows(lg: torch.Tensor, positions: List[int], temperature: float, top_k, top_p, seed: int, g: int):
    """lg [R, V] (run dtype) of the block's active rows -> x0 [R], conf [R] (float64 of the run-dtype
    prob), decision score [R, V] float64 (top1 - top2 = margin (a)), filter margin [R] (d)."""
    if temperature == 0:
        x0 = torch.argmax(lg, dim=-1)
        p = torch.softmax(lg, dim=-1)
        conf = torch.gather(p, 1, x0[:, None])[:, 0].double()
        return x0, conf, lg.double(), torch.full((lg.shape[0],), math.inf, dtype=torch.float64)
    f, fmarg = _filter(lg, temperature, top_k, top_p)
    probs = torch.softmax(f, dim=-1)                                   # run dtype (official)
    u = noise.uniform_rows(seed, noise.GUMBEL, g, positions, lg.shape[1], device=lg.device)
    logp = torch.log_softmax(f.double(), dim=-1)
    score = logp - torch.log(-torch.log(u))                             # orders as p / E
    x0 = torch.argmax(score, dim=-1)
    conf = torch.gather(probs, 1, x0[:, None])[:, 0].double()
    return x0, conf, score, fmarg


def _top2(s: torch.Tensor) -> torch.Tensor:
    if s.shape[-1] < 2:
        return torch.full(s.shape[:-1], math.inf, dtype=torch.float64)
    t = torch.topk(s.double(), 2, dim=-1).values
    d = t[..., 0] - t[..., 1]
    return torch.where(torch.isnan(d), torch.full_like(d, math.inf), d)


class _PrefixCache:
    """Post-rope K/V of positions [0, c) per layer."""

    def __init__(self, n_layers: int):
        self.k = [None] * n_layers
        self.v = [None] * n_layers
        self.c = 0


def validate(gen_length, block_length, steps, minimal_topk, temperature, top_k, top_p, threshold):
    if gen_length <= 0 or block_length <= 0 or steps <= 0 or minimal_topk <= 0:
        raise ValueError("gen_length, block_length, steps and minimal_topk must be positive")
    if gen_length // minimal_topk < 1:
        raise ValueError(f"steps = min(steps, gen_length // minimal_topk) = 0: nothing would be generated")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if top_p is not None and not 0 < top_p:
        raise ValueError("top_p must be > 0")
    if top_k is not None and top_k < 0:
        raise ValueError("top_k must be >= 0")
    if threshold is None:
        raise ValueError("threshold is required (official default 0.95)")


@torch.no_grad()
def generate(model, prompt, gen_length: int = 32, block_length: int = 32, steps: int = 32,
             threshold: float = 0.95, temperature: float = 0.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, minimal_topk: int = 1, eos_early_stop: bool = False,
             eos_id: Optional[int] = None, mask_id: Optional[int] = None, seed: int = 0,
             cache: str = "none", keep_logits: bool = False, on_step=None) -> Result:
    """model: llada2.LLaDA2. prompt: list of ids. cache: "none" (the official loop) or "prefix"."""
    validate(gen_length, block_length, steps, minimal_topk, temperature, top_k, top_p, threshold)
    if cache not in ("none", "prefix"):
        raise ValueError(f"cache '{cache}': use none or prefix")
    mask_id = model.mask_token_id if mask_id is None else mask_id
    eos_id = model.eos_token_id if eos_id is None else eos_id
    B = int(block_length)
    steps = min(int(steps), gen_length // minimal_topk)
    P = len(prompt)
    nb = (P + gen_length + B - 1) // B
    total = nb * B
    x = torch.full((total,), mask_id, dtype=torch.long)
    x[:P] = torch.as_tensor(prompt, dtype=torch.long)
    schedule = get_num_transfer_tokens(B, steps)
    pos_all = torch.arange(total)
    thr_cmp = float(torch.tensor(threshold, dtype=model.rdt))          # the Python float in the logits' dtype
    res = Result(tokens=[], answer=[], stop="length", nfe=0, min_margin=math.inf, min_router_margin=math.inf,
                 logits_trace=[] if keep_logits else None)
    pc = _PrefixCache(model.cfg.num_hidden_layers) if cache == "prefix" else None
    g = 0

    def forward(b0, end):
        """Logits of block rows [b0, end) (and the rows run)."""
        if pc is None:
            allowed = block_causal_mask(pos_all[:end], pos_all[:end], B)
            lg = model.forward_rows(x[:end], pos_all[:end], lambda i, q, k, v: (k, v, allowed))
            return lg[b0:end], (0, end)
        c = pc.c
        rows = pos_all[c:end]
        own_allowed = block_causal_mask(rows, rows, B)
        allowed = torch.cat([torch.ones(len(rows), c, dtype=torch.bool), own_allowed], dim=1)
        store = b0 - c            # rows of finished blocks in this forward

        def attend(i, q, k, v):
            if store > 0:
                ks, vs = k[:, :store], v[:, :store]
                pc.k[i] = ks if pc.k[i] is None else torch.cat([pc.k[i], ks], dim=1)
                pc.v[i] = vs if pc.v[i] is None else torch.cat([pc.v[i], vs], dim=1)
                K = torch.cat([pc.k[i][:, :c], k], dim=1) if c > 0 else k
                V = torch.cat([pc.v[i][:, :c], v], dim=1) if c > 0 else v
            elif c > 0:
                K, V = torch.cat([pc.k[i], k], dim=1), torch.cat([pc.v[i], v], dim=1)
            else:
                K, V = k, v
            return K, V, allowed

        lg = model.forward_rows(x[c:end], rows, attend)
        if store > 0:
            pc.c = b0
        return lg[b0 - c:], (c, end)

    for b in range(P // B, nb):
        b0, end = b * B, (b + 1) * B
        for step in range(steps):
            active = (x[b0:end] == mask_id)
            n_active = int(active.sum())
            if n_active == 0:
                break
            model.routing = []
            lg_block, rows = forward(b0, end)
            rmarg = min([float(r.margin.min()) for r in model.routing] or [math.inf])
            model.routing = None
            res.nfe += 1
            if keep_logits:
                res.logits_trace.append(lg_block.double().clone())
            act_idx = torch.nonzero(active).flatten()
            act_pos = (act_idx + b0).tolist()
            x0, conf, score, fmarg = sample_rows(lg_block[act_idx], act_pos, temperature, top_k, top_p, seed, g)
            k = schedule[step]
            conf_np = conf.cpu().numpy()
            high = conf_np > thr_cmp
            if int(high.sum()) >= k:
                sel = np.nonzero(high)[0]
                path = "threshold"
            else:
                order = np.argsort(-conf_np, kind="stable")
                sel = order[: min(k, n_active)]
                path = "topk"
            # margins
            # (b); a row whose filter kept one token has conf exactly 1 in any dtype: no knife edge
            exact = conf_np == 1.0
            m = float(np.min(np.abs(conf_np - thr_cmp)[~exact])) if (~exact).any() else math.inf
            if len(sel):
                m = min(m, float(_top2(score[torch.as_tensor(sel)]).min()))
            if path == "topk" and len(sel) < n_active:
                cs = np.sort(conf_np)[::-1]
                if not cs[len(sel) - 1] == cs[len(sel)] == 1.0:     # exact ties at 1: settled by position
                    m = min(m, float(cs[len(sel) - 1] - cs[len(sel)]))
            if temperature > 0:
                m = min(m, float(fmarg.min()))
            committed = [act_pos[j] for j in sel]
            toks = x0[torch.as_tensor(sel, dtype=torch.long)] if len(sel) else torch.zeros(0, dtype=torch.long)
            x[torch.as_tensor(committed, dtype=torch.long)] = toks
            info = StepInfo(b, step, g, list(rows), n_active, k, path, committed, m, rmarg)
            res.steps.append(info)
            res.min_margin = min(res.min_margin, m)
            res.min_router_margin = min(res.min_router_margin, rmarg)
            g += 1
            if on_step:
                on_step(info, x)
            if eos_early_stop and bool((toks == eos_id).any()):
                eos_pos = torch.nonzero(x[:end] == eos_id).flatten()
                if len(eos_pos):
                    e = int(eos_pos[0])
                    if bool((x[P:e] != mask_id).all()):
                        res.tokens = x.tolist()
                        res.answer = x[P:e + 1].tolist()
                        res.stop = "eos_early_stop"
                        return res
        if bool((x[P:end] == eos_id).any()):
            res.stop = "eos_block"
            break
    ans = x[P:P + gen_length]
    e = torch.nonzero(ans == eos_id).flatten()
    n = int(e[0]) + 1 if len(e) else gen_length
    res.tokens = x.tolist()
    res.answer = ans[:n].tolist()
    return res


def check_cached(model, prompt, **kw):
    """Runs the official loop and the prefix-cache variant; returns (uncached, cached, max |dlogits|)
    and raises if the tokens, answers or commit traces differ."""
    a = generate(model, prompt, cache="none", keep_logits=True, **kw)
    c = generate(model, prompt, cache="prefix", keep_logits=True, **kw)
    if a.tokens != c.tokens or a.answer != c.answer or a.stop != c.stop or a.nfe != c.nfe:
        raise AssertionError(f"prefix cache differs: tokens {a.tokens} vs {c.tokens}")
    for sa, sc in zip(a.steps, c.steps):
        if sa.positions != sc.positions:
            raise AssertionError(f"prefix cache commits differ at g={sa.global_step}")
    d = max((float((la - lc).abs().max()) for la, lc in zip(a.logits_trace, c.logits_trace)), default=0.0)
    a.logits_trace = c.logits_trace = None
    return a, c, d


def main():
    ap = argparse.ArgumentParser(description="Run the reference LLaDA2 sampler on a checkpoint directory")
    ap.add_argument("model_dir")
    ap.add_argument("--prompt-tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--minimal-topk", type=int, default=1)
    ap.add_argument("--eos-early-stop", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache", default="none", choices=["none", "prefix", "both"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from llada2 import LLaDA2

    m = LLaDA2.from_pretrained(a.model_dir, a.dtype, a.device)
    prompt = [int(t) for t in a.prompt_tokens.split(",") if t.strip()]
    kw = dict(gen_length=a.gen_length, block_length=a.block_length, steps=a.steps, threshold=a.threshold,
              temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, minimal_topk=a.minimal_topk,
              eos_early_stop=a.eos_early_stop, seed=a.seed)
    if a.cache == "both":
        r, _, d = check_cached(m, prompt, **kw)
        print(f"prefix cache == official loop, token for token (max |dlogits| {d:.2e})", file=sys.stderr)
    else:
        r = generate(m, prompt, cache=a.cache, **kw)
    if a.json:
        out = asdict(r)
        out.pop("logits_trace", None)
        print(json.dumps(out))
        return
    print("tokens:", r.tokens)
    print("answer:", r.answer)
    print(f"stop: {r.stop}  nfe: {r.nfe}  min_margin: {r.min_margin:.3e}  router_margin: {r.min_router_margin:.3e}")
    for s in r.steps:
        print(f"  b{s.block} s{s.step} g{s.global_step} rows {s.rows} active {s.n_active} k {s.k} {s.path:9s} "
              f"-> {s.positions}  margin {s.margin:.2e}")
    tok_path = os.path.join(a.model_dir, "tokenizer.json")
    if os.path.isfile(tok_path):
        try:
            from tokenizers import Tokenizer

            print("text:", repr(Tokenizer.from_file(tok_path).decode(r.answer, skip_special_tokens=False)))
        except ImportError:
            pass


if __name__ == "__main__":
    main()
