"""Dream's official sampler (Dream-org `generation_utils.py`: `_sample`, `sample_tokens`,
`top_p_logits`, `top_k_logits`), reproduced step for step, plus the block-wise variant.

    x = prompt + [mask] * gen_length
    per block b (block_length tokens after the prompt; one block = the official sampler; more
    blocks = the cache-free block-wise variant of Fast-dLLM / Sparse-dLLM's Dream samplers):
      timesteps = torch.linspace(1, eps, steps_per_block + 1)      float32, restarted per block
      per step i:  (global step g = b * steps_per_block + i)
        logits = model(x), shifted right by one (row j predicts token j)
        cand = masked positions inside the block (ascending); n = len(cand); t, s = ts[i], ts[i+1]
        sample_tokens(logits[cand]):
            T > 0: logits = logits / T                       (in the logits' dtype)
            top_p < 1: sort descending, cum = cumsum(softmax(sorted)); remove where cum > top_p,
                       shifted right by one (the first token past the threshold stays; the first
                       always stays); removed logits = finfo(dtype).min
            top_k: remove logits < the k-th largest (ties with it stay); = finfo.min
            probs = softmax(logits)
            T > 0: x0 ~ Categorical(probs), confidence = probs[x0];  T == 0: confidence, x0 = max
            topk_margin: confidence = top1 - top2 prob;  entropy: sum(p * log(p + 1e-10))
        alg 'origin': p = 1 - s/t (float32; 1 at the block's last step); each candidate transfers
            when its uniform < p, taking x0 (confidence and alg_temp unused; the others stay masked)
        otherwise: k = int(float32(n) * (1 - s/t)) (float32 ops; n at the block's last step);
            if k > 0: alg_temp None or 0 -> the k most confident candidates; else
            multinomial(softmax(confidence / alg_temp), k) without replacement; x[sel] = x0[sel]

Deviations from the official code (all on purpose, see README.md):
  * noise: noise.counter_uniform instead of torch's RNG, step = the global step index g,
    pos = the absolute position:
      - T > 0 token draw: torch's Categorical / multinomial with one sample is argmax_v p_v / E_v,
        E_v ~ Exp(1). Here E_v = -log u_v, u_v = counter_uniform(seed, GUMBEL=1, g, pos, v),
        p = softmax(filtered logits in float64), ties to the lower v. confidence = probs[x0]
        with probs in the run's dtype (as the rest of the run).
      - origin transfer: u = counter_uniform(seed, ORIGIN=4, g, pos, 0); transfer when
        u < float64(p) (p the float32 1 - s/t).
      - alg_temp > 0: torch.multinomial without replacement is the top-k of w / E, E ~ Exp(1).
        Here w = softmax(confidence / alg_temp) over the candidates in float64,
        E = -log counter_uniform(seed, ALG=5, g, pos, 0), top-k of w / E, ties to the lower
        position.
  * top-k selection: torch.topk's order among equal confidences is unspecified; here a stable
    descending sort picks them: ties go to the lower position. top_p's descending sort is
    stable too (ties -> lower vocab id first).
  * candidates: only the masked positions of the current block; a mask id inside the prompt
    is never a candidate (the official single-block sampler takes every x == mask_id,
    prompt included, and counts it in n).
  * batch size 1, no attention_mask / padding, no generation_tokens_hook_func /
    generation_logits_hook_func, no output_history.

Arithmetic that the C++ side must match (verified, see check_linspace / check_counts):
  * linspace. The official code calls torch.linspace(1, eps, steps + 1) on the model's device
    (CUDA). torch's kernel: step = (end - start) / (n - 1) in float32, x_i = start + step * i for
    i < n // 2, else end - step * (n - 1 - i); compiled with FMA contraction, so each x_i is
    ONE rounding ("fma"):
        x_i = fmaf(step, (float)i, start)              i < n / 2
        x_i = fmaf(-step, (float)(n - 1 - i), end)     otherwise
    "fma" is bit-exact against torch 2.11 on CUDA (H200) and on the CPU (AVX512), 2,396 pairs
    (eps in {1e-3, 1e-2, 0.1, 1e-5} x n in 2..600). The same formula with two roundings
    ("plain": float product, then add) differs from it by 1 ulp in 2,320 of those pairs.
    torch 1.13's CPU kernel (the Debian build here, AVX2) is different again: it fills blocks
    of two 8-float vectors, x[v + j] = f(v) + (float)(j * step) for j = 0..7 with f the "fma"
    formula at the vector's first index v (also across n // 2), and only the tail past
    16 * (n // 16) element by element with f ("torch113-avx2"; bit-exact for the same 2,396
    pairs here; up to 1.2e-7 away from "fma"). The reference uses "fma" (linspace_mode; "torch"
    calls this process's torch.linspace on the CPU); make_dream_fixtures.py checks that every
    golden case gives the same tokens under all four.
  * transfer count: num_mask_token = mask_index.sum() / batch is a float32 tensor; s / t,
    1 - (s / t) and the product are float32 ops; int() truncates:
        k = (int)((float)n * (1.0f - s / t))           (n at the block's last step)
    checked against the official torch expression (check_counts).
  * torch evaluates `cum > top_p`, `logits / T` and `probs + 1e-10` in the logits' dtype: the
    Python floats are rounded to it first (float32(0.9) in a float32 run; the official bf16
    model's logits stay bf16, so there even the softmax, cumsum and confidences are bf16). The
    reference runs those official expressions in the run's dtype.

Decision margin (min_margin, the smallest over all steps; (a)-(c) count at the steps that commit
tokens, (d) at every origin step but a block's last, where p = 1):
  (a) top1 - top2 of the decision score on every row whose x0 matters (all candidates for the
      confidence algorithms, the transferred rows for origin): the filtered logits at T == 0,
      log p - log E (float64) at T > 0;
  (b) confidence[k-1] - confidence[k] of the sorted candidates when 0 < k < n (alg_temp > 0:
      the same gap of the keys w / E);
  (c) on the same rows as (a): top_p: min over the sorted positions of |cum_j - top_p|;
      top_k: the k-th minus the (k+1)-th largest (scaled) logit;
  (d) origin: min |u - p| over the candidates (steps with p < 1).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noise  # noqa: E402

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
LINSPACE_MODES = ("torch", "torch113-avx2", "fma", "plain")

f32 = np.float32


# ----------------------------------------------------------------------------- linspace
def fma_f32(a, b, c) -> np.ndarray:
    """fmaf(a, b, c) elementwise on float32 inputs: a * b + c with one rounding. The product is
    exact in float64; the float64 sum is corrected with its exact error (TwoSum), which only
    matters when the sum lands exactly on a float32 rounding midpoint."""
    a64 = np.asarray(a, dtype=np.float32).astype(np.float64)
    b64 = np.asarray(b, dtype=np.float32).astype(np.float64)
    c64 = np.asarray(c, dtype=np.float32).astype(np.float64)
    p = a64 * b64                                   # 24 x 24 bits: exact
    s = p + c64
    bp = s - p
    err = (p - (s - bp)) + (c64 - bp)               # s + err == p + c exactly
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    other = np.where(s > r64, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf)))
    mid = (r64 + other.astype(np.float64)) / 2      # exact in float64
    at_mid = (s == mid) & (err != 0)
    lo = np.minimum(r, other)
    fixed = np.where(err > 0, np.maximum(r, other), lo)
    return np.where(at_mid, fixed, r).astype(np.float32)


def _fma_f32_exact(a, b, c) -> np.float32:
    """Scalar fmaf through exact rationals (the self-check of fma_f32)."""
    fr = Fraction(float(f32(a))) * Fraction(float(f32(b))) + Fraction(float(f32(c)))
    x = f32(float(fr))
    cands = (x, np.nextafter(x, f32(np.inf)), np.nextafter(x, f32(-np.inf)))
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - fr), int(np.array(v).view(np.uint32)) & 1))


def linspace_f32(eps: float, n: int, mode: str = "torch") -> np.ndarray:
    """float32 [n]: torch.linspace(1, eps, n) (mode "torch": the real call, on the CPU) or one of
    the formulas of the module docstring ("torch113-avx2", "fma", "plain")."""
    if n < 1:
        raise ValueError(f"linspace needs n >= 1 (got {n})")
    if mode == "torch":
        return torch.linspace(1, eps, n, dtype=torch.float32).numpy().copy()
    if mode not in LINSPACE_MODES:
        raise ValueError(f"linspace mode '{mode}' is not known: use one of {', '.join(LINSPACE_MODES)}")
    start, end = f32(1.0), f32(eps)
    out = np.empty(n, dtype=np.float32)
    if n == 1:
        out[0] = start
        return out
    step = f32(end - start) / f32(n - 1)
    half = n // 2
    idx = np.arange(n)
    lower = idx < half
    if mode == "plain":
        scalar = np.where(lower, start + step * idx.astype(np.float32),
                          end - step * (n - 1 - idx).astype(np.float32)).astype(np.float32)
    else:
        scalar = np.where(lower, fma_f32(step, idx.astype(np.float32), start),
                          fma_f32(-step, (n - 1 - idx).astype(np.float32), end)).astype(np.float32)
    out[:] = scalar
    if mode == "torch113-avx2":
        nv = 16 * (n // 16)                          # two 8-float vectors per loop turn
        for v0 in range(0, nv, 8):
            out[v0:v0 + 8] = scalar[v0] + np.arange(8, dtype=np.float32) * step
    return out


def check_linspace(eps_list: Sequence[float] = (1e-3, 1e-2, 0.1, 1e-5), n_max: int = 600,
                   device: str = "cpu", verbose: bool = True) -> dict:
    """Compare torch.linspace(1, eps, n, float32) on `device` with each formula, n in 2..n_max.
    Returns {mode: [number of (eps, n) pairs that differ, largest ulp difference]}."""
    res = {m: [0, 0, 0.0] for m in LINSPACE_MODES[1:]}
    pairs = 0
    for eps in eps_list:
        for n in range(2, n_max + 1):
            t = torch.linspace(1, eps, n, dtype=torch.float32, device=device).cpu().numpy()
            pairs += 1
            for m in res:
                f = linspace_f32(eps, n, m)
                d = np.abs(f.view(np.int32).astype(np.int64) - t.view(np.int32).astype(np.int64))
                if d.max() > 0:
                    res[m][0] += 1
                    res[m][1] = max(res[m][1], int(d.max()))
                    res[m][2] = max(res[m][2], float(np.abs(f.astype(np.float64) - t.astype(np.float64)).max()))
    if verbose:
        print(f"torch {torch.__version__} linspace(1, eps, n, float32) on {device}: {pairs} pairs "
              f"(eps in {list(eps_list)}, n in 2..{n_max})")
        for m, (bad, ulp, ad) in res.items():
            print(f"  {m:14s} " + ("bit-exact" if bad == 0 else
                                   f"differs in {bad} pairs (max {ulp} ulp of the value, max |diff| {ad:.2e})"))
    return {"pairs": pairs, **{m: v for m, v in res.items()}}


# ----------------------------------------------------------------------------- schedule
def transfer_count(n: int, t: np.float32, s: np.float32, last: bool) -> int:
    """The official k = int(num_mask_token * (1 - s / t)) with its float32 arithmetic."""
    if last:
        return int(n)
    return int(f32(n) * (f32(1.0) - f32(s) / f32(t)))


def _official_count(n: int, t: torch.Tensor, s: torch.Tensor, last: bool) -> int:
    """The same, evaluated with the official torch expressions (0-d float32 tensors)."""
    num_mask_token = torch.tensor([[n]], dtype=torch.long).sum() / 1
    return int(num_mask_token * (1 - s / t)) if not last else int(num_mask_token)


def schedule(block_length: int, steps_per_block: int, eps: float, mode: str = "torch") -> List[int]:
    """k per step of one block for the confidence algorithms (a block that starts fully masked)."""
    ts = linspace_f32(eps, steps_per_block + 1, mode)
    n, ks = block_length, []
    for i in range(steps_per_block):
        k = transfer_count(n, ts[i], ts[i + 1], i == steps_per_block - 1)
        ks.append(k)
        n -= k
    return ks


def check_counts(n_max: int = 128, steps_list: Sequence[int] = (1, 2, 3, 5, 8, 16, 32, 64),
                 eps_list: Sequence[float] = (1e-3, 1e-2, 0.1, 1e-5)) -> int:
    """transfer_count (numpy float32) == the official torch expression, for every n <= n_max."""
    checked = 0
    for eps in eps_list:
        for steps in steps_list:
            ts = linspace_f32(eps, steps + 1)
            tt = torch.from_numpy(ts)
            for i in range(steps):
                for n in range(0, n_max + 1):
                    a = transfer_count(n, ts[i], ts[i + 1], i == steps - 1)
                    b = _official_count(n, tt[i], tt[i + 1], i == steps - 1)
                    if a != b:
                        raise AssertionError(f"transfer count differs: eps {eps} steps {steps} i {i} n {n}: {a} vs {b}")
                    checked += 1
    return checked


# ----------------------------------------------------------------------------- sample_tokens
@dataclass
class RowSample:
    x0: torch.Tensor          # [C] long
    conf: torch.Tensor        # [C] in the run's dtype
    score_gap: torch.Tensor   # [C] float64: (a)
    cut_gap: torch.Tensor     # [C] float64: (c), inf without filters


def _top2_gap(scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[-1] < 2:
        return torch.full(scores.shape[:-1], math.inf, dtype=torch.float64)
    t = torch.topk(scores.to(torch.float64), 2, dim=-1).values
    g = t[..., 0] - t[..., 1]
    return torch.where(torch.isnan(g), torch.full_like(g, math.inf), g)


def sample_tokens(logits: torch.Tensor, temperature: float = 0.0, top_p: Optional[float] = None,
                  top_k: Optional[int] = None, confidence: str = "prob", seed: int = 0, step: int = 0,
                  positions: Optional[Sequence[int]] = None) -> RowSample:
    """Dream's sample_tokens over rows [C, V] (the run's dtype). confidence: prob (maskgit_plus,
    origin), margin (topk_margin) or neg_entropy (entropy). positions: the rows' absolute
    positions (the noise counter), needed when temperature > 0."""
    lg = logits
    C, V = lg.shape
    fmin = torch.finfo(lg.dtype).min
    cut_gap = torch.full((C,), math.inf, dtype=torch.float64)
    if temperature > 0:
        lg = lg / temperature
    if top_p is not None and top_p < 1:
        sorted_logits, sorted_idx = torch.sort(lg, dim=-1, descending=True, stable=True)
        cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        mask = torch.zeros_like(lg, dtype=torch.bool).scatter_(-1, sorted_idx, remove)
        lg = lg.masked_fill(mask, fmin)
        thr = float(torch.tensor(top_p, dtype=lg.dtype))   # the threshold as torch compares it
        cut_gap = torch.minimum(cut_gap, (cum.to(torch.float64) - thr).abs().min(dim=-1).values)
    if top_k is not None:
        kk = min(int(top_k), V)
        vals = torch.topk(lg, kk, dim=-1).values
        lg = lg.masked_fill(lg < vals[..., -1:], fmin)
        if kk < V:
            srt = torch.sort(lg.to(torch.float64), dim=-1, descending=True).values
            kth, nxt = srt[:, kk - 1], srt[:, kk]
            # A k-th value that is itself filtered (top_p left fewer than k) decides nothing.
            gap = torch.where(kth > fmin, kth - nxt, torch.full_like(kth, math.inf))
            cut_gap = torch.minimum(cut_gap, gap)
    probs = torch.softmax(lg, dim=-1)
    if temperature > 0:
        if positions is None or len(positions) != C:
            raise ValueError("temperature > 0 needs the rows' positions for the noise")
        p64 = torch.softmax(lg.to(torch.float64), dim=-1)
        e = -torch.log(noise.uniform_rows(seed, noise.GUMBEL, step, list(positions), V))
        key = (p64 / e).numpy()
        x0 = torch.from_numpy(np.argmax(key, axis=-1).astype(np.int64))     # first maximum
        with np.errstate(divide="ignore"):
            score = torch.from_numpy(np.log(p64.numpy()) - np.log(e.numpy()))
        score_gap = _top2_gap(score)
        conf = torch.gather(probs, -1, x0[:, None])[:, 0]
    else:
        x0 = torch.from_numpy(np.argmax(probs.numpy(), axis=-1).astype(np.int64))  # first maximum
        conf = torch.gather(probs, -1, x0[:, None])[:, 0]
        score_gap = _top2_gap(lg)
    if confidence == "margin":
        sp = torch.sort(probs, dim=-1, descending=True).values
        conf = sp[:, 0] - sp[:, 1]
    elif confidence == "neg_entropy":
        conf = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    elif confidence != "prob":
        raise ValueError(f"confidence '{confidence}' is not known")
    return RowSample(x0, conf, score_gap, cut_gap)


# ----------------------------------------------------------------------------- _sample
def validate(gen_length: int, steps: int, block_length: Optional[int], alg: str, eps: float,
             temperature: float, top_p: Optional[float], top_k: Optional[int],
             alg_temp: Optional[float]) -> int:
    """Raises ValueError with a clear message; returns the number of blocks."""
    if alg not in ALGS:
        raise ValueError(f"alg '{alg}' is not known: use one of {', '.join(ALGS)}")
    if gen_length <= 0 or steps <= 0:
        raise ValueError(f"gen_length ({gen_length}) and steps ({steps}) must be positive")
    if block_length is None:
        block_length = gen_length
    if block_length <= 0:
        raise ValueError(f"block_length ({block_length}) must be positive")
    if gen_length % block_length != 0:
        raise ValueError(f"gen_length ({gen_length}) must be a multiple of block_length ({block_length})")
    num_blocks = gen_length // block_length
    if steps % num_blocks != 0:
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks ({num_blocks} = "
                         f"gen_length {gen_length} / block_length {block_length})")
    if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
        raise ValueError(f"eps ({eps}) must be in (0, 1)")
    if not temperature >= 0:
        raise ValueError(f"temperature ({temperature}) must be >= 0")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p ({top_p}) must be in (0, 1] (1 or none = off)")
    if top_k is not None and (int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k ({top_k}) must be an integer >= 1 (none = off)")
    if alg_temp is not None and not alg_temp >= 0:
        raise ValueError(f"alg_temp ({alg_temp}) must be >= 0")
    return num_blocks


@dataclass
class StepInfo:
    block: int
    step: int              # within the block
    global_step: int
    n: int                 # candidates (masked positions of the block)
    k: int                 # tokens committed
    positions: List[int]   # committed positions (selection order; origin: ascending)
    margin: float


@dataclass
class GenerateResult:
    tokens: List[int]                      # the full final x, prompt included
    min_margin: float
    steps: List[StepInfo] = field(default_factory=list)


def selection_keys(conf: torch.Tensor, alg_temp: Optional[float], seed: int, g: int,
                   cand: Sequence[int]) -> np.ndarray:
    """float64 keys whose k largest (stable: ties -> lower position) are the positions to commit:
    the confidences, or with alg_temp > 0 the multinomial-without-replacement keys w / E
    (w = softmax(conf / alg_temp) over the candidates, E = -log counter_uniform(ALG, g, pos))."""
    conf = conf.to(torch.float64).numpy()
    if alg_temp is None or alg_temp == 0:
        return conf
    z = conf / alg_temp
    w = np.exp(z - z.max())
    w = w / w.sum()
    e = -np.log(noise.counter_uniform(seed, noise.ALG, g, np.asarray(cand, dtype=np.uint64), 0))
    return w / e


CONFIDENCE = {"origin": "prob", "maskgit_plus": "prob", "topk_margin": "margin", "entropy": "neg_entropy"}


@torch.no_grad()
def generate(model, prompt, gen_length: int = 32, steps: int = 16, block_length: Optional[int] = None,
             alg: str = "entropy", eps: float = 1e-3, temperature: float = 0.0,
             top_p: Optional[float] = None, top_k: Optional[int] = None, alg_temp: Optional[float] = None,
             seed: int = 0, mask_id: Optional[int] = None, linspace_mode: str = "fma",
             on_step=None) -> GenerateResult:
    """model: callable ids [1, L] -> shifted logits [1, L, V] (dream.Dream). prompt: token ids."""
    if block_length is None:
        block_length = gen_length
    num_blocks = validate(gen_length, steps, block_length, alg, eps, temperature, top_p, top_k, alg_temp)
    if mask_id is None:
        mask_id = model.mask_token_id
    prompt = [int(t) for t in torch.as_tensor(prompt).reshape(-1).tolist()]
    P = len(prompt)
    x = torch.tensor([prompt + [mask_id] * gen_length], dtype=torch.long)
    spb = steps // num_blocks
    ts = linspace_f32(eps, spb + 1, linspace_mode)
    tt = torch.from_numpy(ts)
    result = GenerateResult(tokens=[], min_margin=math.inf)
    for b in range(num_blocks):
        b0 = P + b * block_length
        b1 = b0 + block_length
        for i in range(spb):
            g = b * spb + i
            last = i == spb - 1
            cand = (torch.nonzero(x[0, b0:b1] == mask_id, as_tuple=False).flatten() + b0).tolist()
            n = len(cand)
            margin = math.inf
            committed: List[int] = []
            if n > 0:
                logits = model(x)[0]                                 # shifted, [L, V]
                rows = logits[cand]
                if alg == "origin":
                    p_t = (1 - tt[i + 1] / tt[i]) if not last else torch.tensor(1.0)
                    p = float(p_t)
                    u = noise.counter_uniform(seed, noise.ORIGIN, g, np.asarray(cand, dtype=np.uint64), 0)
                    transfer = np.flatnonzero(u < p)
                    if not last:
                        margin = float(np.abs(u - p).min())
                    if len(transfer):
                        pos_t = [cand[j] for j in transfer]
                        rs = sample_tokens(rows[torch.as_tensor(transfer)], temperature, top_p, top_k,
                                           "prob", seed, g, pos_t)
                        margin = min(margin, float(rs.score_gap.min()), float(rs.cut_gap.min()))
                        x[0, torch.as_tensor(pos_t)] = rs.x0
                        committed = pos_t
                else:
                    k = transfer_count(n, ts[i], ts[i + 1], last)
                    if k != _official_count(n, tt[i], tt[i + 1], last):
                        raise AssertionError("float32 transfer count disagrees with torch")
                    if k > 0:
                        rs = sample_tokens(rows, temperature, top_p, top_k, CONFIDENCE[alg], seed, g, cand)
                        keys = selection_keys(rs.conf, alg_temp, seed, g, cand)
                        order = np.argsort(-keys, kind="stable")     # ties -> lower position
                        sel = order[:k]
                        margin = min(float(rs.score_gap.min()), float(rs.cut_gap.min()))
                        if k < n:
                            margin = min(margin, float(keys[order[k - 1]] - keys[order[k]]))
                        committed = [cand[j] for j in sel]
                        x[0, torch.as_tensor(committed)] = rs.x0[torch.as_tensor(sel)]
                del logits
            info = StepInfo(b, i, g, n, len(committed), committed, margin)
            result.steps.append(info)
            result.min_margin = min(result.min_margin, margin)
            if on_step:
                on_step(info, x)
    result.tokens = x[0].tolist()
    return result


def main():
    ap = argparse.ArgumentParser(description="Run the reference Dream sampler (generation_utils.py _sample) "
                                             "on a checkpoint directory")
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("--prompt-tokens", help="comma-separated token ids")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--block-length", type=int, default=None, help="default: gen-length (one block)")
    ap.add_argument("--alg", default="entropy", help=", ".join(ALGS))
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--alg-temp", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--linspace", default="fma", choices=list(LINSPACE_MODES),
                    help="timesteps: fma (= torch.linspace on CUDA and in torch >= 2 on the CPU; default), "
                         "torch (this torch's CPU linspace), torch113-avx2 or plain")
    ap.add_argument("--json", action="store_true", help="print a JSON object (tokens, min_margin, steps)")
    ap.add_argument("--check-linspace", action="store_true",
                    help="compare torch.linspace with the formulas (and the transfer counts) and exit")
    ap.add_argument("--device", default="cpu", help="device for --check-linspace")
    a = ap.parse_args()
    if a.check_linspace:
        r = check_linspace(device=a.device)
        print(f"transfer counts: numpy float32 == official torch expression in {check_counts()} cases")
        if a.json:
            print(json.dumps({"torch": torch.__version__, "device": a.device, **r}))
        return
    if not a.model_dir:
        ap.error("model_dir is required")
    if not a.prompt_tokens:
        ap.error("--prompt-tokens is required")
    try:
        prompt = [int(t) for t in a.prompt_tokens.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--prompt-tokens '{a.prompt_tokens}' is not a comma-separated list of integers")
    if not prompt:
        ap.error("--prompt-tokens is empty")
    try:
        validate(a.gen_length, a.steps, a.block_length if a.block_length is not None else a.gen_length,
                 a.alg, a.eps, a.temperature, a.top_p, a.top_k, a.alg_temp)
    except ValueError as e:
        ap.error(str(e))
    from dream import Dream

    m = Dream.from_pretrained(a.model_dir, a.dtype)
    V = m.cfg.vocab_size
    bad = [t for t in prompt if not 0 <= t < V]
    if bad:
        ap.error(f"prompt token ids {bad[:5]} are outside the vocabulary [0, {V})")
    r = generate(m, prompt, a.gen_length, a.steps, a.block_length, a.alg, a.eps, a.temperature, a.top_p,
                 a.top_k, a.alg_temp, a.seed, linspace_mode=a.linspace)
    if a.json:
        print(json.dumps({"tokens": r.tokens, "min_margin": r.min_margin,
                          "steps": [asdict(s) for s in r.steps]}, allow_nan=True))
    else:
        print("tokens:", r.tokens)
        print("min_margin: %.3e" % r.min_margin)


if __name__ == "__main__":
    main()
