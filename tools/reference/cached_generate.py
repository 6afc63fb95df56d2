"""Cached decoding for LLaDA and Dream: the K/V-cache samplers of Fast-dLLM (prefix / dual cache,
confidence threshold) and Sparse-dLLM (sparse cache), as mosaic implements them.

Written from NVlabs/Fast-dLLM (llada/generate.py: generate, generate_with_prefix_cache,
generate_with_dual_cache, get_transfer_index; llada/model/modeling_llada.py; dream/model/
generation_utils_block.py) and OpenMOSS/Sparse-dLLM (opencompass/models/sparse_dllm/
llada_generate.py, modeling_llada.py CustomCache, dream/generation_utils.py, dream/Cache.py);
no code is copied from them. The forward passes are llada.py / dream.py (`forward_rows`), the
decisions reuse generate.py / dream_generate.py, the noise is noise.py.

Caches (per block [bs, be) of the sequence x of length L; a cache lives for one block):
    none    every step a full forward.
    prefix  step 0: full forward that stores every layer's post-rope K/V of positions [0, bs).
            later steps: rows [bs, L) attend to [cached prefix ; their own fresh K/V].
    dual    step 0: full forward that stores the K/V of all L positions. later steps: rows
            [bs, be); their fresh K/V overwrite the cache's rows bs..be-1 (persisting), then they
            attend to all L cached rows.
    sparse  step 0: full forward, no cache. step 1: full forward (attending to everything) that
            stores, per layer, only the K/V of the `keep` outside positions ([0, bs) ++ [be, L))
            whose max-pooled score mean_h(mean_block(q_h) . k_j) is largest (sparse_select).
            later steps: rows [bs, be) attend to [kept K/V ; their own fresh K/V].
Step kinds in the records: full (no cache involved), store (full forward that builds the
cache), cached (a forward over some rows that uses it).

LLaDA (generate_llada_cached): blocks and schedule as generate.py. Candidates are the masked
positions in [0, be) at full/store steps, in [bs, be) at cached steps. Without threshold,
step i commits the schedule[i] most confident candidates; a step with schedule[i] == 0 runs no
forward. With threshold T every step commits the most confident candidate plus every other one
with confidence >= T, until the block has no mask left. cfg_scale > 0: the unconditional
sequence (prompt positions masked) has its own cache, built and used the same way.

Dream (generate_dream_cached): none = dream_generate.generate (plus the threshold loop).
prefix/dual/sparse: step 0 is a full forward that commits x[bs] (sampled from the shifted
logits of position bs) unconditionally; then steps i = 1 .. steps_per_block-1 commit
k = int(n * (1 - s/t)) (k = n at the last) by alg, or, with threshold, loop until the block
is full. Within a forward over rows [r0, r1), position p reads raw row p-1 when p-1 >= r0,
else its own row p (Fast-dLLM's cat([logits[:, :1], logits[:, :-1]]) over the rows run).

Noise: noise.counter_uniform as generate.py / dream_generate.py; the step index g counts the
step-loop iterations across blocks (an iteration that runs no forward counts too, so without
threshold g = block * steps_per_block + step, as there); pos = the absolute position.

Decision margin: min over all steps of the margins of generate.py / dream_generate.py, plus
threshold decisions (|conf - T| of every candidate but the first in rank order; the first's
gap to the second when it is below T) and the sparse selections (see sparse_select).

CLI:
    cached_generate.py --family llada|dream DIR --prompt-tokens 1,2,3 --gen-length 32 --steps 32
        --block-length 8 --cache none|prefix|dual|sparse [--threshold T] [--sparse-keep 0.5]
        [--sparse-kernel 3] [LLaDA: --temperature --cfg-scale --remasking --seed]
        [Dream: --alg --eps --temperature --top-p --top-k --alg-temp --seed]
        [--dtype float64|float32] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dream_generate as dg  # noqa: E402
import generate as lg  # noqa: E402

CACHES = ("none", "prefix", "dual", "sparse")
INF = math.inf


# ----------------------------------------------------------------------------- results
@dataclass
class StepRecord:
    block: int
    step: int                   # within the block
    global_step: int            # the noise counter g
    kind: str                   # full | store | cached
    rows: Tuple[int, int]       # rows run, [begin, end)
    n: int                      # candidates
    k: int                      # committed
    positions: List[int]        # committed positions, in selection order
    margin: float


@dataclass
class CachedResult:
    tokens: List[int]           # the full final x, prompt included
    nfe: int                    # forwards (a guidance step, conditional + unconditional, counts once)
    min_margin: float           # decisions and sparse selections
    selection_margin: float     # the sparse selections' part of it (inf without sparse cache)
    selections: int = 0         # sparse selections (layers x stores x sequences) ...
    boundary_ties: int = 0      # ... settled by the position tie-break at the cut
    steps: List[StepRecord] = field(default_factory=list)

    def absorb(self, seq: "SeqCache"):
        """Take in a finished block's sparse-selection statistics."""
        self.selection_margin = min(self.selection_margin, seq.selection_margin)
        self.selections += seq.selections
        self.boundary_ties += seq.boundary_ties

    def note(self, rec: StepRecord):
        self.steps.append(rec)
        self.nfe += 1
        self.min_margin = min(self.min_margin, rec.margin)


def validate_cache(cache: str, threshold: Optional[float], sparse_keep: float, sparse_kernel: int):
    if cache not in CACHES:
        raise ValueError(f"cache '{cache}' is not known: use one of {', '.join(CACHES)}")
    if threshold is not None and not (0.0 < threshold <= 1.0):
        raise ValueError(f"threshold ({threshold}) must be in (0, 1] (or none)")
    if not (0.0 < sparse_keep <= 1.0):
        raise ValueError(f"sparse_keep ({sparse_keep}) must be in (0, 1]")
    # An even kernel with padding kernel // 2 makes max_pool1d return n + 1 values (Sparse-dLLM
    # would then index past the cache): only odd kernels have a meaning.
    if int(sparse_kernel) != sparse_kernel or sparse_kernel < 1 or sparse_kernel % 2 == 0:
        raise ValueError(f"sparse_kernel ({sparse_kernel}) must be an odd integer >= 1")


def step_kind(cache: str, i: int) -> str:
    """The kind of a block's i-th forward step (0-based) under a cache mode."""
    if cache == "none":
        return "full"
    if cache in ("prefix", "dual"):
        return "store" if i == 0 else "cached"
    return "full" if i == 0 else ("store" if i == 1 else "cached")   # sparse


# ----------------------------------------------------------------------------- decisions
def select_top_k(keys: np.ndarray, k: int) -> Tuple[np.ndarray, float]:
    """The k largest keys (stable: ties -> lower index) and margin (b): keys[k-1] - keys[k]."""
    order = np.argsort(-keys, kind="stable")
    if k > len(order):
        raise RuntimeError(f"{k} tokens to commit but only {len(order)} candidates")
    m = float(keys[order[k - 1]] - keys[order[k]]) if 0 < k < len(order) else INF
    return order[:k], m


def select_threshold(conf: np.ndarray, threshold: float) -> Tuple[np.ndarray, float]:
    """Fast-dLLM's threshold rule: rank by confidence (stable), keep the first, drop every other
    one below threshold. Margin: |conf - T| of every ranked candidate but the first, and the
    first's gap to the second when the first is below T (then only the ranking picks it)."""
    order = np.argsort(-conf, kind="stable")
    if len(order) == 0:
        raise RuntimeError("a threshold step without candidates")
    c = conf[order]
    keep = np.concatenate([[True], c[1:] >= threshold])
    m = float(np.abs(c[1:] - threshold).min()) if len(c) > 1 else INF
    if len(c) > 1 and c[0] < threshold:
        m = min(m, float(c[0] - c[1]))
    return order[keep], m


# ----------------------------------------------------------------------------- sparse selection
def pool_max(score: torch.Tensor, kernel: int) -> torch.Tensor:
    """max_pool1d(score, kernel, stride 1, padding kernel // 2) with -inf padding, [n] -> [n]."""
    r = kernel // 2
    if r == 0:
        return score
    padded = F.pad(score[None, None], (r, r), value=-math.inf)[0, 0]
    return padded.unfold(0, kernel, 1).max(dim=-1).values


def sparse_select(q_block: torch.Tensor, k_all: torch.Tensor, bs: int, be: int, keep_ratio: float,
                  kernel: int) -> Tuple[torch.Tensor, float, bool]:
    """Sparse-dLLM's CustomCache.filter_cache. q_block [1, H, B, hd]: the block rows' post-rope
    queries; k_all [1, Hkv, L, hd]: every position's post-rope keys. Returns the kept positions
    (ascending), the selection margin (relative to max(1, |value|)) and whether a tie straddled
    the cut (so that the position order decided).

        outside = [0, bs) ++ [be, L)                      (n = L - B; bs - 1 and be are neighbours)
        score_j = mean_h (mean over block rows of q_h) . k_{outside[j], h // (H / Hkv)}
        pooled  = pool_max(score, kernel);  keep = int(n * keep_ratio)
        kept    = the `keep` largest pooled values, ties -> lower j
    Margin: v = pooled sorted descending; v[keep-1] - v[keep] when they differ; when a tie
    straddles the cut (max pooling copies values, so exact ties are common and are settled by
    position), the distance from the tied value to the nearest different pooled value."""
    L = k_all.shape[2]
    outside = torch.cat([torch.arange(0, bs), torch.arange(be, L)])
    n = len(outside)
    rep = q_block.shape[1] // k_all.shape[1]
    ko = k_all[:, :, outside]
    if rep > 1:
        ko = ko.repeat_interleave(rep, dim=1)                    # head h reads kv head h // rep
    qbar = q_block.mean(dim=-2)                                  # [1, H, hd]
    score = torch.matmul(qbar.unsqueeze(-2), ko.transpose(-2, -1)).squeeze(-2).mean(dim=1)[0]   # [n]
    pooled = pool_max(score, kernel).to(torch.float64).cpu().numpy()
    keep = int(n * keep_ratio)
    order = np.argsort(-pooled, kind="stable")
    kept = torch.sort(outside[torch.as_tensor(order[:keep], dtype=torch.long)]).values
    margin, tie = INF, False
    if 0 < keep < n:
        v = pooled[order]
        hi, lo = v[keep - 1], v[keep]
        tie = bool(hi == lo)
        if not tie:
            gap = hi - lo
        else:
            other = np.abs(pooled[pooled != hi] - hi)
            gap = float(other.min()) if len(other) else INF
        margin = float(gap) / max(1.0, abs(float(hi)))
    return kept, margin, tie


# ----------------------------------------------------------------------------- per-sequence cache
class SeqCache:
    """One sequence's K/V cache for one block (post-rope keys, per layer [1, Hkv, N, hd]) and the
    forwards that build and use it. `model` is llada.LLaDA or dream.Dream (forward_rows)."""

    def __init__(self, model, mode: str, keep_ratio: float = 0.5, kernel: int = 3):
        self.model, self.mode = model, mode
        self.keep_ratio, self.kernel = keep_ratio, kernel
        self.k: Dict[int, torch.Tensor] = {}
        self.v: Dict[int, torch.Tensor] = {}
        self.kept: Dict[int, List[int]] = {}          # sparse: kept positions per layer
        self.selection_margin = INF
        self.selections = 0                           # sparse selections made (one per layer) ...
        self.boundary_ties = 0                        # ... and how many a position tie-break settled

    def rows(self, kind: str, bs: int, be: int, L: int) -> Tuple[int, int]:
        if kind != "cached":
            return 0, L
        return (bs, L) if self.mode == "prefix" else (bs, be)

    def forward(self, x: torch.Tensor, kind: str, bs: int, be: int) -> Tuple[int, torch.Tensor]:
        """x [L] token ids -> (r0, raw logits of rows [r0, r1)) for a step of this kind."""
        L = x.shape[0]
        r0, r1 = self.rows(kind, bs, be, L)
        if kind == "full":
            attend = _plain
        elif kind == "store":
            if self.mode == "none":
                raise RuntimeError("cache 'none' has no store step")
            self.k, self.v, self.kept = {}, {}, {}
            attend = lambda i, q, k, v: self._store(i, q, k, v, bs, be)   # noqa: E731
        elif kind == "cached":
            if not self.k:
                raise RuntimeError("a cached step before the cache was stored")
            attend = lambda i, q, k, v: self._cached(i, k, v, bs, be)     # noqa: E731
        else:
            raise ValueError(f"step kind '{kind}'")
        return r0, self.model.forward_rows(x[r0:r1], torch.arange(r0, r1), attend)

    def _store(self, i, q, k, v, bs, be):
        """A full forward: attend to everything; keep what later steps will reuse."""
        if self.mode == "prefix":
            self.k[i], self.v[i] = k[:, :, :bs].clone(), v[:, :, :bs].clone()
        elif self.mode == "dual":
            self.k[i], self.v[i] = k.clone(), v.clone()
        else:
            pos, m, tie = sparse_select(q[:, :, bs:be], k, bs, be, self.keep_ratio, self.kernel)
            self.selections += 1
            self.boundary_ties += int(tie)
            self.k[i], self.v[i] = k[:, :, pos].clone(), v[:, :, pos].clone()
            self.kept[i] = pos.tolist()
            self.selection_margin = min(self.selection_margin, m)
        return k, v

    def _cached(self, i, k, v, bs, be):
        if self.mode == "dual":
            # Fast-dLLM's replace_position: the block's fresh K/V overwrite the cache in place.
            self.k[i][:, :, bs:be] = k
            self.v[i][:, :, bs:be] = v
            return self.k[i], self.v[i]
        return torch.cat([self.k[i], k], dim=2), torch.cat([self.v[i], v], dim=2)


def _plain(i, q, k, v):
    return k, v


# ----------------------------------------------------------------------------- LLaDA
@torch.no_grad()
def generate_llada_cached(model, prompt, steps: int = 32, gen_length: int = 32, block_length: int = 8,
                          temperature: float = 0.0, cfg_scale: float = 0.0, remasking: str = "low_confidence",
                          seed: int = 0, cache: str = "none", threshold: Optional[float] = None,
                          sparse_keep: float = 0.5, sparse_kernel: int = 3, mask_id: Optional[int] = None,
                          softmax_dtype: str = "model") -> CachedResult:
    """model: llada.LLaDA. prompt: token ids. See the module docstring."""
    num_blocks = lg.validate(steps, gen_length, block_length, temperature, cfg_scale, remasking)
    validate_cache(cache, threshold, sparse_keep, sparse_kernel)
    if mask_id is None:
        mask_id = model.mask_token_id
    prompt = [int(t) for t in torch.as_tensor(prompt).reshape(-1).tolist()]
    P = len(prompt)
    if P == 0:
        raise ValueError("the prompt is empty")
    x = torch.tensor(prompt + [mask_id] * gen_length, dtype=torch.long)
    prompt_index = x != mask_id            # taken once, before the first step (as generate.py)
    spb = steps // num_blocks
    res = CachedResult(tokens=[], nfe=0, min_margin=INF, selection_margin=INF)
    g = 0
    for b in range(num_blocks):
        bs = P + b * block_length
        be = bs + block_length
        seqs = [SeqCache(model, cache, sparse_keep, sparse_kernel) for _ in range(2 if cfg_scale > 0 else 1)]
        schedule = lg.get_num_transfer_tokens(int((x[bs:be] == mask_id).sum()), spb)
        i = 0
        while (i < spb) if threshold is None else bool((x[bs:be] == mask_id).any()):
            k = schedule[i] if threshold is None else None
            if k != 0:       # a schedule step with nothing to commit runs no forward
                res.note(_llada_step(seqs, x, prompt_index, mask_id, b, i, g, bs, be, k, cache, temperature,
                                     cfg_scale, remasking, seed, threshold, softmax_dtype))
            i += 1
            g += 1
        for s in seqs:
            res.absorb(s)
    res.min_margin = min(res.min_margin, res.selection_margin)
    res.tokens = x.tolist()
    return res


def _llada_step(seqs, x, prompt_index, mask_id, b, i, g, bs, be, k, cache, temperature, cfg_scale,
                remasking, seed, threshold, softmax_dtype) -> StepRecord:
    """One forward + commit; x is updated in place."""
    kind = step_kind(cache, i)
    r0, logits = seqs[0].forward(x, kind, bs, be)
    if cfg_scale > 0:
        un_x = x.clone()
        un_x[prompt_index] = mask_id
        _, un = seqs[1].forward(un_x, kind, bs, be)      # its own cache, same kind and rows
        logits = un + (cfg_scale + 1) * (logits - un)
    lo = 0 if kind != "cached" else bs                  # full forwards see masks before the block too
    cand = (torch.nonzero(x[lo:be] == mask_id, as_tuple=False).flatten() + lo).tolist()
    cl = logits[torch.as_tensor(cand, dtype=torch.long) - r0]
    x0c, conf, noisy = lg.score_candidates(cl, cand, temperature, remasking, seed, g, softmax_dtype)
    conf = conf.cpu().numpy()
    if threshold is None:
        sel, m = select_top_k(conf, k)
    else:
        sel, m = select_threshold(conf, threshold)
    # (a) the top1 - top2 gap of the noisy score on the rows whose x0 matters.
    gaps = lg._top2_gap(noisy)
    rows = np.arange(len(cand)) if remasking == "low_confidence" else sel
    if len(rows):
        m = min(m, float(gaps[torch.as_tensor(rows, dtype=torch.long)].min()))
    sel_t = torch.as_tensor(sel, dtype=torch.long)
    pos = [cand[j] for j in sel]
    x[torch.as_tensor(pos, dtype=torch.long)] = x0c[sel_t].to(x.dtype)
    return StepRecord(b, i, g, kind, (r0, r0 + logits.shape[0]), len(cand), len(pos), pos, m)


# ----------------------------------------------------------------------------- Dream
def shifted(raw: torch.Tensor, r0: int, positions: Sequence[int]) -> torch.Tensor:
    """Dream's prediction rows for absolute positions from the raw logits of rows [r0, r1): raw row
    p - 1 when it was run, else row p itself (the first run row repeats, as the shift does)."""
    idx = [max(p - 1, r0) - r0 for p in positions]
    return raw[torch.as_tensor(idx, dtype=torch.long)]


@torch.no_grad()
def generate_dream_cached(model, prompt, gen_length: int = 32, steps: int = 16, block_length: Optional[int] = None,
                          alg: str = "entropy", eps: float = 1e-3, temperature: float = 0.0,
                          top_p: Optional[float] = None, top_k: Optional[int] = None,
                          alg_temp: Optional[float] = None, seed: int = 0, cache: str = "none",
                          threshold: Optional[float] = None, sparse_keep: float = 0.5, sparse_kernel: int = 3,
                          mask_id: Optional[int] = None, linspace_mode: str = "fma") -> CachedResult:
    """model: dream.Dream. prompt: token ids. See the module docstring."""
    if block_length is None:
        block_length = gen_length
    num_blocks = dg.validate(gen_length, steps, block_length, alg, eps, temperature, top_p, top_k, alg_temp)
    validate_cache(cache, threshold, sparse_keep, sparse_kernel)
    spb = steps // num_blocks
    if threshold is not None and alg_temp:
        raise ValueError("alg_temp > 0 has no meaning with threshold (the confidence is the token's "
                         "probability and the rule is deterministic)")
    if cache != "none" and threshold is None:
        if spb < 2:
            raise ValueError(f"cache '{cache}' needs at least 2 steps per block (step 0 only commits the "
                             f"block's first token); got {spb}")
        if alg == "origin":
            raise ValueError(f"cache '{cache}' does not support alg origin")
    if mask_id is None:
        mask_id = model.mask_token_id
    prompt = [int(t) for t in torch.as_tensor(prompt).reshape(-1).tolist()]
    if not prompt:
        raise ValueError("the prompt is empty")
    if cache == "none" and threshold is None:
        return _dream_plain(model, prompt, gen_length, steps, block_length, alg, eps, temperature, top_p, top_k,
                            alg_temp, seed, mask_id, linspace_mode)
    P = len(prompt)
    x = torch.tensor(prompt + [mask_id] * gen_length, dtype=torch.long)
    ts = dg.linspace_f32(eps, spb + 1, linspace_mode)
    res = CachedResult(tokens=[], nfe=0, min_margin=INF, selection_margin=INF)
    ctx = dict(x=x, mask_id=mask_id, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    g = 0
    for b in range(num_blocks):
        bs = P + b * block_length
        be = bs + block_length
        seq = SeqCache(model, cache, sparse_keep, sparse_kernel)
        i = 0
        if cache != "none":
            res.note(_dream_first_token(seq, ctx, b, g, bs, be))
            i, g = 1, g + 1
        if threshold is None:         # (cache != none here: none without threshold is _dream_plain)
            for i in range(1, spb):
                cand = _block_masks(x, bs, be, mask_id)
                if cand:      # an empty block runs no forward (as dream_generate.py)
                    k = dg.transfer_count(len(cand), ts[i], ts[i + 1], i == spb - 1)
                    res.note(_dream_step(seq, ctx, b, i, g, bs, be, cand, ("topk", k), alg, alg_temp))
                g += 1
        else:
            while True:
                cand = _block_masks(x, bs, be, mask_id)
                if not cand:
                    break
                res.note(_dream_step(seq, ctx, b, i, g, bs, be, cand, ("threshold", threshold), alg, None))
                i, g = i + 1, g + 1
        res.absorb(seq)
    res.min_margin = min(res.min_margin, res.selection_margin)
    res.tokens = x.tolist()
    return res


def _block_masks(x, bs, be, mask_id) -> List[int]:
    return (torch.nonzero(x[bs:be] == mask_id, as_tuple=False).flatten() + bs).tolist()


def _dream_first_token(seq: SeqCache, ctx, b, g, bs, be) -> StepRecord:
    """Step 0 of a cached block: a full forward; x[bs] takes the token sampled at position bs."""
    x = ctx["x"]
    kind = step_kind(seq.mode, 0)
    r0, raw = seq.forward(x, kind, bs, be)
    rs = dg.sample_tokens(shifted(raw, r0, [bs]), ctx["temperature"], ctx["top_p"], ctx["top_k"], "prob",
                          ctx["seed"], g, [bs])
    x[bs] = rs.x0[0]
    m = min(float(rs.score_gap.min()), float(rs.cut_gap.min()))
    return StepRecord(b, 0, g, kind, (r0, r0 + raw.shape[0]), 1, 1, [bs], m)


def _dream_step(seq: SeqCache, ctx, b, i, g, bs, be, cand, rule, alg, alg_temp) -> StepRecord:
    """One forward + commit; rule = ("topk", k) or ("threshold", T). x is updated in place."""
    x = ctx["x"]
    kind = step_kind(seq.mode, i)
    r0, raw = seq.forward(x, kind, bs, be)
    rec = StepRecord(b, i, g, kind, (r0, r0 + raw.shape[0]), len(cand), 0, [], INF)
    how, arg = rule
    if how == "topk" and arg == 0:
        return rec                     # the forward still ran (it may store the cache)
    confidence = dg.CONFIDENCE[alg] if how == "topk" else "prob"
    rs = dg.sample_tokens(shifted(raw, r0, cand), ctx["temperature"], ctx["top_p"], ctx["top_k"], confidence,
                          ctx["seed"], g, cand)
    if how == "topk":
        sel, m = select_top_k(dg.selection_keys(rs.conf, alg_temp, ctx["seed"], g, cand), arg)
    else:
        sel, m = select_threshold(rs.conf.to(torch.float64).numpy(), arg)
    rec.margin = min(m, float(rs.score_gap.min()), float(rs.cut_gap.min()))
    rec.positions = [cand[j] for j in sel]
    rec.k = len(sel)
    x[torch.as_tensor(rec.positions, dtype=torch.long)] = rs.x0[torch.as_tensor(sel, dtype=torch.long)]
    return rec


def _dream_plain(model, prompt, gen_length, steps, block_length, alg, eps, temperature, top_p, top_k, alg_temp,
                 seed, mask_id, linspace_mode) -> CachedResult:
    """cache none, no threshold: exactly dream_generate.generate (the official / block-wise sampler)."""
    r = dg.generate(model, prompt, gen_length, steps, block_length, alg, eps, temperature, top_p, top_k, alg_temp,
                    seed, mask_id, linspace_mode)
    res = CachedResult(tokens=r.tokens, nfe=0, min_margin=INF, selection_margin=INF)
    L = len(r.tokens)
    for s in r.steps:
        if s.n > 0:                      # steps of an already full block run no forward
            res.note(StepRecord(s.block, s.step, s.global_step, "full", (0, L), s.n, s.k, s.positions, s.margin))
    res.min_margin = r.min_margin
    return res


# ----------------------------------------------------------------------------- self-test
def self_test(model, prompt_len: int = 9, block: int = 8, tol: float = 1e-9) -> Dict[str, float]:
    """A cached forward right after the store, on the same x, must give the full forward's rows
    (prefix, dual, and sparse keeping everything); plain forward_rows over all rows must give the
    model's logits bit for bit. Returns the largest differences (float64 models: ~1e-13)."""
    L = prompt_len + 3 * block
    V = model.cfg.vocab_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, min(V, 390), (L,), generator=gen)
    full = model.forward_rows(x, torch.arange(L), _plain)
    is_llada = hasattr(model, "lm_head")       # LLaDA's model(x) is raw; Dream's is shifted by default
    ref = model(x[None])[0] if is_llada else model(x[None], shift=False)[0]
    assert torch.equal(full, ref), "forward_rows differs from the plain forward"
    bs, be = prompt_len + block, prompt_len + 2 * block
    out = {}
    for mode, keep in (("prefix", 0.5), ("dual", 0.5), ("sparse", 1.0)):
        c = SeqCache(model, mode, keep, 3)
        c.forward(x, "store", bs, be)
        r0, lg_rows = c.forward(x, "cached", bs, be)
        d = float((lg_rows - full[r0:r0 + lg_rows.shape[0]]).abs().max())
        out[mode] = d
        if model.dtype == torch.float64 and d > tol:
            raise AssertionError(f"{mode}: the cached rows differ from the full forward by {d:.3e}")
    return out


# ----------------------------------------------------------------------------- CLI
def main():
    ap = argparse.ArgumentParser(description="Cached decoding reference (Fast-dLLM / Sparse-dLLM) for LLaDA and Dream")
    ap.add_argument("model_dir")
    ap.add_argument("--family", required=True, choices=["llada", "dream"])
    ap.add_argument("--prompt-tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=8)
    ap.add_argument("--cache", default="none", choices=list(CACHES))
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--sparse-keep", type=float, default=0.5)
    ap.add_argument("--sparse-kernel", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg-scale", type=float, default=0.0, help="LLaDA")
    ap.add_argument("--remasking", default="low_confidence", help="LLaDA: low_confidence | random")
    ap.add_argument("--alg", default="entropy", help="Dream: " + ", ".join(dg.ALGS))
    ap.add_argument("--eps", type=float, default=1e-3, help="Dream")
    ap.add_argument("--top-p", type=float, default=None, help="Dream")
    ap.add_argument("--top-k", type=int, default=None, help="Dream")
    ap.add_argument("--alg-temp", type=float, default=None, help="Dream")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--json", action="store_true", help="print a JSON object (tokens, nfe, min_margin, steps)")
    a = ap.parse_args()
    try:
        prompt = [int(t) for t in a.prompt_tokens.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--prompt-tokens '{a.prompt_tokens}' is not a comma-separated list of integers")
    try:
        if a.family == "llada":
            from llada import LLaDA

            m = LLaDA.from_pretrained(a.model_dir, a.dtype)
            r = generate_llada_cached(m, prompt, a.steps, a.gen_length, a.block_length, a.temperature, a.cfg_scale,
                                      a.remasking, a.seed, a.cache, a.threshold, a.sparse_keep, a.sparse_kernel)
        else:
            from dream import Dream

            m = Dream.from_pretrained(a.model_dir, a.dtype)
            r = generate_dream_cached(m, prompt, a.gen_length, a.steps, a.block_length, a.alg, a.eps, a.temperature,
                                      a.top_p, a.top_k, a.alg_temp, a.seed, a.cache, a.threshold, a.sparse_keep,
                                      a.sparse_kernel)
    except ValueError as e:
        ap.error(str(e))
    if a.json:
        print(json.dumps({"tokens": r.tokens, "nfe": r.nfe, "min_margin": r.min_margin,
                          "selection_margin": r.selection_margin,
                          "steps": [asdict(s) for s in r.steps]}, allow_nan=True))
    else:
        print("tokens:", r.tokens)
        print("nfe:", r.nfe)
        print("min_margin: %.3e" % r.min_margin)


if __name__ == "__main__":
    main()
