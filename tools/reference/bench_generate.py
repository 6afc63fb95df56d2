"""Whole-generation throughput of a lean PyTorch Fast-dLLM (no cache / prefix cache / dual cache).

    python3 tools/reference/bench_generate.py --preset llada-8b --tokens 4096,16384 --cache none,prefix,dual
    python3 tools/reference/bench_generate.py --preset dream-7b --tokens 4096 --gen 256 --block 32 --json dream.json
    python3 tools/reference/bench_generate.py --model tests/fixtures/llada_tiny --device cpu --dtype float32 --check

The baseline that `mosaic bench --cache none,prefix,dual,sparse --tokens 4096 --gen-length 256
--block-length 32` is compared against. x = a seeded random prompt of L - gen tokens (the mask id
avoided, as bench_step.py) + gen masks; steps = gen (one token per step), blocks of --block, greedy
(temperature 0), batch 1, the model in --dtype (bf16) with random weights (--preset) or a checkpoint.

The loops are NVlabs/Fast-dLLM's (llada/generate.py generate / generate_with_prefix_cache /
generate_with_dual_cache; dream/model/generation_utils_block.py _sample) with the semantics of
cached_generate.py (mosaic's spec), per block [bs, be):

  LLaDA  schedule = get_num_transfer_tokens(block, steps_per_block) (one token per step here);
         a step: logits of the rows run (the LM head over every row the model ran, as the official
         model does), x0 = argmax, confidence = softmax(logits)[x0] in the model dtype (the current
         ML-GSAI/LLaDA code), -inf off the candidates, the k most confident committed.
  Dream  none: the block-wise sampler (k = int(n (1 - s/t)) on the float32 linspace(1, eps, spb + 1),
         k = n at the block's last step, entropy confidence); prefix/dual: step 0 a full forward
         that commits x[bs] from the shifted logits, then steps 1..spb-1 as above with the shift
         taken within the rows run (position bs reads its own row).
  none   every step a full forward over all L rows.
  prefix step 0 a full forward that stores every layer's post-rope K/V of [0, bs); later steps run
         rows [bs, L) against [that prefix ; their own fresh K/V].
  dual   step 0 a full forward that stores the K/V of all L rows; later steps run rows [bs, be),
         whose fresh K/V overwrite the cache's rows bs..be-1 in place (Fast-dLLM replace_position),
         and attend to all L.

Lean on the GPU: bf16, fused q/k/v and gate/up weights (concatenated once at load; the same
numbers), the rope tables built once per length, one joint rope over q and k, post-rope K/V in one
preallocated buffer per run (prefix steps write their fresh rows behind the prefix instead of a
torch.cat per layer), F.scaled_dot_product_attention (Dream's GQA: enable_gqa when a probe shows
that flash SDPA takes it (torch >= 2.5), else repeat_interleave), argmax / softmax / top-k only on
the block's rows, no host sync in a step except the official loops' "is the block full" check
(one .item() after each step but the store step, as upstream; Dream's no-cache sampler syncs on its
boolean-mask index instead; --no-break-check drops it), inference_mode. LLaDA runs with flash SDPA
on and memory-efficient SDPA off, as the official LLaDAModel sets them.

Timing (CUDA): per length and cache mode, --warmup untimed generations of --warmup-blocks blocks
(default: 1 generation of the first block only, which runs the store and cached steps; dual's
shapes are the same in every block, prefix's cached rows shrink by a block per block, so a later
block's first cached step meets new GEMM shapes inside the timing, as upstream would), then --iters
timed whole generations
(CUDA events around the generation, synchronized at its end; the median is reported). Each
forward (model + LM head, not the sampling) is also timed with a CUDA event pair: the mean of the
full/store forwards and of the cached forwards. tokens/s = gen / seconds. Peak memory =
torch.cuda.max_memory_allocated over the timed generations (weights included). OOM -> "OOM" and
the next mode / length is tried. The speedup column is over the first --cache mode listed.

--check (CPU, float32, the tiny fixtures): the lean loop's tokens and nfe must equal
cached_generate.py's (generate_llada_cached / generate_dream_cached, greedy, steps = gen) for every
--cache mode on a few prompts / lengths / blocks; exits 1 otherwise.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dream_generate as dg  # noqa: E402
import generate as lg  # noqa: E402
import make_checkpoint  # noqa: E402
import st_io  # noqa: E402
from bench_step import Timer, is_oom  # noqa: E402
from dream import DreamConfig  # noqa: E402
from llada import LLaDAConfig, attention, rms_norm, rope_angles  # noqa: E402

MODES = ("none", "prefix", "dual")
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def _torch_at_least(major: int, minor: int) -> bool:
    try:
        v = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    except ValueError:
        return False
    return v >= (major, minor)


SDPA_GQA = HAS_SDPA and _torch_at_least(2, 5)      # F.scaled_dot_product_attention(..., enable_gqa=True)


def _flash_takes_gqa(model) -> bool:
    """Whether flash SDPA accepts enable_gqa with the layouts forward() passes (q a strided view of the
    fused projection, k/v [1, N, Hkv, hd] transposed); otherwise repeat_interleave is used, so that
    the math backend is never picked silently."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return False
    H, Hkv, hd = model.H, model.Hkv, model.hd
    try:
        qkv = torch.zeros(1, 64, H + 2 * Hkv, hd, dtype=model.dtype, device=model.device)
        kv = torch.zeros(1, 128, Hkv, hd, dtype=model.dtype, device=model.device)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(qkv[:, :, :H].transpose(1, 2), kv.transpose(1, 2),
                                           kv.transpose(1, 2), enable_gqa=True)
        torch.cuda.synchronize()
        return True
    except Exception:  # noqa: BLE001  (no kernel for these inputs: RuntimeError)
        return False


# ----------------------------------------------------------------------------- lean model
class Layer:
    __slots__ = ("n1", "n1b", "qkv", "qkvb", "o", "ob", "n2", "n2b", "gu", "gub", "down", "downb")


class LeanModel:
    """A Llama-style (LLaDA) / Qwen2 (Dream, q/k/v biases) bidirectional forward over some rows of x.

    forward(ids [1, R], r0, kind, buf, store_upto, cos, sin) -> logits [1, R, V] of the rows at
    positions r0 .. r0+R-1:
      kind "full"   the rows attend to their own K/V (all of x when R = L); when buf is given, the
                    post-rope K/V of positions [0, store_upto) are copied into it (the store step).
      kind "cached" the rows' fresh K/V are written into buf at [r0, r0+R), then they attend to all
                    of buf (prefix: cached [0, bs) + fresh [bs, L); dual: all L with the block replaced).
    Numerics as llada.py / dream.py (RMSNorm statistics in float32; LLaDA's rope in float32
    (rope_full_precision), Dream's in the model dtype with bf16 cos/sin, as HF Qwen2)."""

    def __init__(self, cfg: dict, t: Dict[str, torch.Tensor]):
        self.arch = make_checkpoint.arch_of(cfg)
        pop = t.pop
        if self.arch == "llada":
            c = LLaDAConfig(cfg)
            self.d, self.H, self.Hkv, self.hd = c.d_model, c.n_heads, c.n_kv_heads, c.head_dim
            self.eps, self.theta, self.mask_id = c.rms_norm_eps, c.rope_theta, c.mask_token_id
            self.vocab = c.vocab_size
            self.ffn = c.mlp_hidden_size
            self.embed = pop("model.transformer.wte.weight")
            self.layers = []
            for i in range(c.n_layers):
                p = f"model.transformer.blocks.{i}."
                w = Layer()
                w.n1, w.n1b = pop(p + "attn_norm.weight"), pop(p + "attn_norm.bias", None)
                if p + "att_proj.weight" in t:
                    w.qkv, w.qkvb = pop(p + "att_proj.weight"), pop(p + "att_proj.bias", None)
                else:
                    w.qkv = _cat([pop(p + n + ".weight") for n in ("q_proj", "k_proj", "v_proj")])
                    w.qkvb = _cat_opt([pop(p + n + ".bias", None) for n in ("q_proj", "k_proj", "v_proj")])
                w.o, w.ob = pop(p + "attn_out.weight"), pop(p + "attn_out.bias", None)
                w.n2, w.n2b = pop(p + "ff_norm.weight"), pop(p + "ff_norm.bias", None)
                w.gu = _cat([pop(p + "ff_proj.weight"), pop(p + "up_proj.weight")])   # ff_proj = the gate
                w.gub = _cat_opt([pop(p + "ff_proj.bias", None), pop(p + "up_proj.bias", None)])
                w.down, w.downb = pop(p + "ff_out.weight"), pop(p + "ff_out.bias", None)
                self.layers.append(w)
            self.fn, self.fnb = pop("model.transformer.ln_f.weight"), pop("model.transformer.ln_f.bias", None)
            if c.weight_tying:
                self.head, self.headb = self.embed, None
            else:
                self.head = pop("model.transformer.ff_out.weight")
                self.headb = pop("model.transformer.ff_out.bias", None)
            self.rope_fp32 = True
        else:
            c = DreamConfig(cfg)
            self.d, self.H, self.Hkv, self.hd = c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim
            self.eps, self.theta, self.mask_id = c.rms_norm_eps, c.rope_theta, c.mask_token_id
            self.vocab = c.vocab_size
            self.ffn = c.intermediate_size
            self.embed = pop("model.embed_tokens.weight")
            self.layers = []
            for i in range(c.n_layers):
                p = f"model.layers.{i}."
                w = Layer()
                w.n1, w.n1b = pop(p + "input_layernorm.weight"), None
                w.qkv = _cat([pop(p + f"self_attn.{n}.weight") for n in ("q_proj", "k_proj", "v_proj")])
                w.qkvb = _cat_opt([pop(p + f"self_attn.{n}.bias", None) for n in ("q_proj", "k_proj", "v_proj")])
                w.o, w.ob = pop(p + "self_attn.o_proj.weight"), None
                w.n2, w.n2b = pop(p + "post_attention_layernorm.weight"), None
                w.gu = _cat([pop(p + "mlp.gate_proj.weight"), pop(p + "mlp.up_proj.weight")])
                w.gub = None
                w.down, w.downb = pop(p + "mlp.down_proj.weight"), None
                self.layers.append(w)
            self.fn, self.fnb = pop("model.norm.weight"), None
            self.head = self.embed if c.tie else pop("lm_head.weight")
            self.headb = None
            self.rope_fp32 = False
        self.dtype, self.device = self.embed.dtype, self.embed.device
        self.n_layers = len(self.layers)
        self.rep = self.H // self.Hkv
        self.tables = None                   # rope tables of the current length (set_length)
        self.gqa = "none" if self.rep == 1 else ("enable_gqa" if SDPA_GQA and self.dtype != torch.float64
                                                 else "repeat_interleave")
        if self.device.type == "cuda" and self.gqa == "enable_gqa" and not _flash_takes_gqa(self):
            self.gqa = "repeat_interleave"
        if self.device.type == "cuda" and self.arch == "llada":
            # As the official LLaDAModel.__init__ (and bench_step.py): flash SDPA on, memory-efficient off.
            torch.backends.cuda.enable_flash_sdp(True)
            torch.backends.cuda.enable_mem_efficient_sdp(False)

    def weight_bytes(self) -> int:
        ts = [self.embed, self.fn, self.fnb, self.head if self.head is not self.embed else None, self.headb]
        for w in self.layers:
            ts += [getattr(w, s) for s in Layer.__slots__]
        return sum(x.numel() * x.element_size() for x in ts if x is not None)

    def set_length(self, L: Optional[int]):
        self.tables = None if L is None else self.rope_tables(L)

    def rope_tables(self, L: int):
        """cos, sin_signed [L, 1, hd] (broadcast over [1, R, heads, hd]); sin_signed = cat(-sin, sin) of
        the half-angles so that rotate_half(x) * sin == roll(x, hd/2) * sin_signed exactly."""
        ang = rope_angles(torch.arange(L, device=self.device), self.hd, self.theta)   # float32 angles
        if self.dtype == torch.float64:
            ang = ang.to(torch.float64)
        cos, sin = ang.cos(), ang.sin()
        h = self.hd // 2
        sin = torch.cat([-sin[:, :h], sin[:, h:]], dim=-1)
        if not self.rope_fp32:               # Dream / HF Qwen2: cos/sin cast to the model dtype
            cos, sin = cos.to(self.dtype), sin.to(self.dtype)
        return cos[:, None, :].contiguous(), sin[:, None, :].contiguous()

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = self.hd // 2
        if x.dtype != cos.dtype:             # LLaDA rope_full_precision: rotate in float32, cast back
            xf = x.to(cos.dtype)
            return (xf * cos + xf.roll(h, dims=-1) * sin).to(x.dtype)
        return x * cos + x.roll(h, dims=-1) * sin

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [1, R, H, hd], k/v [1, N, Hkv, hd] (any strides, last dim contiguous) -> [1, R, H * hd]."""
        R = q.shape[1]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.gqa == "enable_gqa":
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        else:
            if self.rep > 1:                 # query head h reads kv head h // rep
                k = k.repeat_interleave(self.rep, dim=1)
                v = v.repeat_interleave(self.rep, dim=1)
            o = attention(q, k, v)           # llada.py: SDPA on torch 2.x, explicit softmax otherwise
        return o.transpose(1, 2).reshape(1, R, self.H * self.hd)

    def forward(self, ids: torch.Tensor, r0: int, kind: str, buf: Optional["KVBuffer"], store_upto: int,
                cos_all: torch.Tensor, sin_all: torch.Tensor) -> torch.Tensor:
        R = ids.shape[1]
        H, Hkv, hd = self.H, self.Hkv, self.hd
        cos, sin = cos_all[r0:r0 + R], sin_all[r0:r0 + R]
        x = F.embedding(ids, self.embed)
        for i, w in enumerate(self.layers):
            h = rms_norm(x, w.n1, self.eps, w.n1b)
            qkv = F.linear(h, w.qkv, w.qkvb).view(1, R, H + 2 * Hkv, hd)
            del h
            qk = self._rope(qkv[:, :, :H + Hkv], cos, sin)
            q, k, v = qk[:, :, :H], qk[:, :, H:], qkv[:, :, H + Hkv:]
            if kind == "cached":
                buf.k[i][:, r0:r0 + R].copy_(k)
                buf.v[i][:, r0:r0 + R].copy_(v)
                k, v = buf.k[i], buf.v[i]
            elif buf is not None and store_upto > 0:
                buf.k[i][:, :store_upto].copy_(k[:, :store_upto])
                buf.v[i][:, :store_upto].copy_(v[:, :store_upto])
            a = self._attend(q, k, v)
            del q, k, v, qk, qkv
            x = x + F.linear(a, w.o, w.ob)
            del a
            h = rms_norm(x, w.n2, self.eps, w.n2b)
            g, u = F.linear(h, w.gu, w.gub).split(self.ffn, dim=-1)
            del h
            x = x + F.linear(F.silu(g) * u, w.down, w.downb)
            del g, u
        x = rms_norm(x, self.fn, self.eps, self.fnb)
        return F.linear(x, self.head, self.headb)          # the LM head over every row run


def _cat(ts: List[torch.Tensor]) -> torch.Tensor:
    out = torch.cat(ts, dim=0)
    ts.clear()
    return out


def _cat_opt(ts: List[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    if all(t is None for t in ts):
        return None
    if any(t is None for t in ts):
        raise ValueError("some of the fused projections have a bias and some do not")
    return _cat(ts)


class KVBuffer:
    """Post-rope K/V of every layer, [1, L, Hkv, hd] each (the logical [1, Hkv, L, hd] transposed:
    the layout flash attention reads), allocated once per generation."""

    def __init__(self, model: LeanModel, L: int):
        shape = (model.n_layers, 1, L, model.Hkv, model.hd)
        self.k = torch.empty(shape, dtype=model.dtype, device=model.device)
        self.v = torch.empty(shape, dtype=model.dtype, device=model.device)


# ----------------------------------------------------------------------------- forward timing
class ForwardTimes:
    """Per-forward times by kind ("full" = a full forward without cache or the store step, "cached"):
    CUDA event pairs (read after the generation's final synchronize) or perf_counter on the CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.pending: Dict[str, list] = {"full": [], "cached": []}

    def start(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def stop(self, kind: str, a):
        if self.cuda:
            b = torch.cuda.Event(enable_timing=True)
            b.record()
            self.pending[kind].append((a, b))
        else:
            self.pending[kind].append((time.perf_counter() - a) * 1e3)

    def ms(self) -> Dict[str, List[float]]:
        if self.cuda:
            torch.cuda.synchronize()
            return {k: [a.elapsed_time(b) for a, b in v] for k, v in self.pending.items()}
        return {k: list(v) for k, v in self.pending.items()}


# ----------------------------------------------------------------------------- the loops
def _top_k(conf: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest (ties -> lower index, as cached_generate.py's stable sort)."""
    if k == 1:
        return conf.argmax(dim=0, keepdim=True)          # the first maximum
    return torch.sort(conf.float(), descending=True, stable=True).indices[:k]   # float: exact, any device


@torch.no_grad()
def generate(model: LeanModel, x_init: torch.Tensor, prompt_len: int, gen: int, block: int, cache: str,
             *, dream_alg: str = "entropy", eps: float = 1e-3, break_check: bool = True,
             prompt_has_mask: bool = False, times: Optional[ForwardTimes] = None,
             max_blocks: Optional[int] = None):
    """One generation (steps = gen, one token per step). Returns (x [1, L], nfe)."""
    if cache not in MODES:
        raise ValueError(f"cache '{cache}': use one of {', '.join(MODES)}")
    x = x_init.clone()
    L = x.shape[1]
    P = prompt_len
    mask = model.mask_id
    nb = gen // block
    spb = block                     # steps = gen -> steps per block = block
    buf = KVBuffer(model, L) if cache != "none" else None
    cos, sin = model.tables
    if cos.shape[0] != L:
        raise ValueError(f"model.set_length({L}) first")
    nfe = 0

    def fwd(kind: str, bs: int, be: int):
        nonlocal nfe
        if kind == "cached":
            r0, r1 = bs, (L if cache == "prefix" else be)
        else:
            r0, r1 = 0, L
        store_upto = (L if cache == "dual" else bs) if kind == "store" else 0
        t0 = times.start() if times else None
        logits = model.forward(x[:, r0:r1], r0, "cached" if kind == "cached" else "full", buf, store_upto, cos, sin)
        if times:
            times.stop("cached" if kind == "cached" else "full", t0)
        nfe += 1
        return r0, logits[0]

    def block_full(bs: int, be: int) -> bool:    # the official loops' break check (a host sync)
        return not bool((x[0, bs:be] == mask).any())

    if model.arch == "llada":
        for b in range(nb if max_blocks is None else min(nb, max_blocks)):
            bs = P + b * block
            be = bs + block
            schedule = lg.get_num_transfer_tokens(block, spb)      # the block is all masks at its start
            for i in range(spb):
                k = schedule[i]
                if k == 0:
                    continue
                kind = "full" if cache == "none" else ("store" if i == 0 else "cached")
                r0, logits = fwd(kind, bs, be)
                # candidates: masks in [0, be) at full / store steps (only the block's without masks
                # in the prompt: earlier blocks are complete), in [bs, be) at cached steps
                c0 = bs if (kind == "cached" or not prompt_has_mask) else 0
                rows = logits[c0 - r0:be - r0]
                x0 = rows.argmax(dim=-1)
                conf = torch.softmax(rows, dim=-1).gather(-1, x0[:, None])[:, 0]   # model dtype
                xs = x[0, c0:be]
                conf = conf.masked_fill(xs != mask, -math.inf)
                sel = _top_k(conf, k)
                xs[sel] = x0[sel]
                del logits, rows
                if break_check and kind != "store" and block_full(bs, be):   # upstream: none after the store
                    break
    else:
        ts = dg.linspace_f32(eps, spb + 1, "fma")                 # torch.linspace on CUDA, bit for bit
        for b in range(nb if max_blocks is None else min(nb, max_blocks)):
            bs = P + b * block
            be = bs + block
            n = block                                            # masks left in the block
            first = 0
            if cache != "none":
                if spb < 2:
                    raise ValueError("Dream's cached loop needs at least 2 steps per block")
                r0, logits = fwd("store", bs, be)
                row = logits[bs - 1 - r0:bs - r0]                 # shifted: position bs reads row bs - 1
                x[0, bs:bs + 1] = torch.softmax(row, dim=-1).argmax(dim=-1)
                del logits, row
                n -= 1
                first = 1                                        # (no break check after it, as upstream)
            for i in range(first, spb):
                if n == 0:
                    continue                                     # (the official loops have left already)
                kind = "full" if cache == "none" else "cached"
                r0, logits = fwd(kind, bs, be)
                k = dg.transfer_count(n, ts[i], ts[i + 1], i == spb - 1)
                if k > 0:
                    if r0 < bs:                                  # full forward: position p reads row p - 1
                        rows = logits[bs - 1 - r0:be - 1 - r0]
                    else:                                        # rows from bs: position bs reads its own row
                        blk = logits[bs - r0:be - r0]
                        rows = torch.cat([blk[:1], blk[:-1]], dim=0)
                    probs = torch.softmax(rows, dim=-1)
                    x0 = probs.argmax(dim=-1)
                    if dream_alg == "entropy":
                        conf = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
                    else:                                        # maskgit_plus
                        conf = probs.gather(-1, x0[:, None])[:, 0]
                    xs = x[0, bs:be]
                    conf = conf.masked_fill(xs != mask, -math.inf)
                    sel = _top_k(conf, k)
                    xs[sel] = x0[sel]
                    n -= k
                    del probs, rows
                del logits
                if break_check and block_full(bs, be):
                    break
    return x, nfe


# ----------------------------------------------------------------------------- benchmark
def build_model(args, device, dtype):
    t0 = time.time()
    if args.model:
        cfg = st_io.read_config(args.model)
        tensors = st_io.load_tensors(args.model, dtype=dtype, device=device)
        src = args.model
    else:
        cfg = make_checkpoint.PRESETS[args.preset]()
        tensors = make_checkpoint.random_tensors(cfg, dtype, device=device, seed=args.seed)
        src = f"preset {args.preset} (random weights)"
    model = LeanModel(cfg, tensors)
    if tensors:
        print(f"note: {len(tensors)} checkpoint tensors are not used, e.g. {sorted(tensors)[:3]}")
    tensors.clear()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, cfg, src, time.time() - t0


def make_x(model: LeanModel, L: int, gen: int, device) -> torch.Tensor:
    """A seeded random prompt of L - gen tokens (never the mask id) + gen masks, as bench_step.py."""
    P = L - gen
    g = torch.Generator(device=device)
    g.manual_seed(1234 + L)
    prompt = torch.randint(0, model.vocab - 1, (1, P), device=device, generator=g)
    prompt[prompt == model.mask_id] = model.mask_id - 1
    x = torch.full((1, L), model.mask_id, dtype=torch.long, device=device)
    x[:, :P] = prompt
    return x


def run_mode(model, x_init, P, gen, block, cache, args, device) -> dict:
    res = {"cache": cache, "status": "ok"}
    cuda = device.type == "cuda"
    kw = dict(dream_alg=args.dream_alg, eps=args.eps, break_check=not args.no_break_check)
    try:
        for _ in range(args.warmup):
            generate(model, x_init, P, gen, block, cache, max_blocks=args.warmup_blocks or None, **kw)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        secs, fwd = [], {"full": [], "cached": []}
        nfe = None
        for _ in range(args.iters):
            times = ForwardTimes(cuda)
            with Timer(cuda) as t:
                _, nfe = generate(model, x_init, P, gen, block, cache, times=times, **kw)
            secs.append(t.ms / 1e3)
            for k, v in times.ms().items():
                fwd[k] += v
        s = statistics.median(secs)
        res.update({
            "seconds": s, "seconds_all": secs, "tokens_per_s": gen / s, "nfe": nfe,
            "forwards_full_or_store": len(fwd["full"]) // args.iters,
            "forwards_cached": len(fwd["cached"]) // args.iters,
            "full_or_store_ms_mean": statistics.mean(fwd["full"]) if fwd["full"] else None,
            "cached_ms_mean": statistics.mean(fwd["cached"]) if fwd["cached"] else None,
            "forward_ms_sum": sum(fwd["full"]) + sum(fwd["cached"]),
            "full_or_store_ms_all": [round(v, 4) for v in fwd["full"]],
            "cached_ms_all": [round(v, 4) for v in fwd["cached"]],
        })
        if cuda:
            res["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        res = {"cache": cache, "status": "OOM"}
    if res["status"] == "OOM":
        # Outside the except block so the exception's frames (holding the cache, logits) are gone.
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return res


def sdpa_flags() -> dict:
    b = torch.backends.cuda
    out = {}
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        f = getattr(b, name, None)
        if f is not None:
            out[name.replace("_sdp_enabled", "")] = bool(f())
    return out


def fmt(v, spec):
    return "-" if v is None else spec % v


def bench(args, device, dtype):
    torch.manual_seed(args.seed)
    model, cfg, src, build_s = build_model(args, device, dtype)
    wbytes = model.weight_bytes()
    cuda = device.type == "cuda"
    dev_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    modes = parse_modes(args.cache)
    print(f"{model.arch} from {src}: weights {wbytes / 2**30:.2f} GiB, built in {build_s:.1f} s on {dev_name}; "
          f"torch {torch.__version__}, {str(dtype).replace('torch.', '')}, SDPA {HAS_SDPA}, "
          f"GQA: {model.gqa}", flush=True)
    results = []
    for L in [int(t) for t in args.tokens.split(",") if t.strip()]:
        gen, block = args.gen, args.block
        P = L - gen
        if P < 1:
            raise SystemExit(f"--tokens {L} leaves no prompt for --gen {gen}")
        try:
            x_init = make_x(model, L, gen, device)
            model.set_length(L)
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            x_init = None
        base = None
        for cache in modes:
            if x_init is None:
                r = {"cache": cache, "status": "OOM"}
            else:
                r = run_mode(model, x_init, P, gen, block, cache, args, device)
            r.update({"tokens": L, "prompt": P, "gen": gen, "block": block, "steps": gen})
            if base is None:
                base = r
            if r["status"] == "ok" and base.get("status") == "ok":
                r["speedup"] = base["seconds"] / r["seconds"]
            results.append(r)
            pm = r.get("peak_mem_bytes")
            print(f"  L={L} {cache:>6s}: {r['status']}  {fmt(r.get('seconds'), '%.3f')} s  "
                  f"{fmt(r.get('tokens_per_s'), '%.1f')} tok/s  nfe {r.get('nfe', '-')}  "
                  f"full/store {fmt(r.get('full_or_store_ms_mean'), '%.2f')} ms  "
                  f"cached {fmt(r.get('cached_ms_mean'), '%.2f')} ms  "
                  f"peak {fmt(pm / 2**30 if pm else None, '%.2f')} GiB", flush=True)
        model.set_length(None)
        x_init = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    out = {
        "tool": "tools/reference/bench_generate.py",
        "device": dev_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sdpa": HAS_SDPA,
        "sdpa_enable_gqa": SDPA_GQA,
        "gqa": model.gqa,
        "sdpa_backends_enabled": sdpa_flags() if cuda else None,
        "arch": model.arch,
        "model": src,
        "dtype": str(dtype).replace("torch.", ""),
        "weights_bytes": wbytes,
        "build_seconds": round(build_s, 2),
        "settings": {"gen": args.gen, "block": args.block, "steps": args.gen, "cache": modes,
                     "temperature": 0.0, "llada_softmax_dtype": "model",
                     "dream_alg": args.dream_alg, "eps": args.eps, "warmup": args.warmup,
                     "warmup_blocks": args.warmup_blocks, "iters": args.iters,
                     "break_check": not args.no_break_check, "seed": args.seed},
        "results": results,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print()
    print(f"{'tokens':>7s} {'cache':>6s} {'status':>6s} {'seconds':>8s} {'tok/s':>8s} {'nfe':>4s} "
          f"{'full/store ms':>13s} {'cached ms':>9s} {'peak GiB':>8s} {'speedup':>7s}")
    for r in results:
        pm = r.get("peak_mem_bytes")
        print(f"{r['tokens']:7d} {r['cache']:>6s} {r['status']:>6s} {fmt(r.get('seconds'), '%.3f'):>8s} "
              f"{fmt(r.get('tokens_per_s'), '%.1f'):>8s} {str(r.get('nfe', '-')):>4s} "
              f"{fmt(r.get('full_or_store_ms_mean'), '%.2f'):>13s} {fmt(r.get('cached_ms_mean'), '%.2f'):>9s} "
              f"{fmt(pm / 2**30 if pm else None, '%.2f'):>8s} {fmt(r.get('speedup'), '%.2fx'):>7s}")
    print(f"wrote {args.json}")


def parse_modes(s: str) -> List[str]:
    modes = [m.strip() for m in s.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"--cache {s}: use some of {', '.join(MODES)} (sparse is not in this baseline)")
    return modes


# ----------------------------------------------------------------------------- --check
CHECK_CASES = [  # (prompt length, gen, block, mask positions in the prompt (LLaDA only))
    (9, 32, 8, ()),
    (5, 64, 16, ()),
    (13, 16, 16, ()),
    (3, 32, 32, ()),
    (21, 48, 8, ()),
    (11, 32, 8, (2, 7)),
]


def check(args, device, dtype) -> int:
    import cached_generate as cg

    if not args.model:
        raise SystemExit("--check needs --model DIR (tests/fixtures/llada_tiny or dream_tiny)")
    cfg = st_io.read_config(args.model)
    arch = make_checkpoint.arch_of(cfg)
    lean = LeanModel(cfg, st_io.load_tensors(args.model, dtype=dtype, device=device))
    if arch == "llada":
        from llada import LLaDA
        ref = LLaDA.from_pretrained(args.model, dtype, "cpu")
    else:
        from dream import Dream
        ref = Dream.from_pretrained(args.model, dtype, "cpu")
    modes = parse_modes(args.cache)
    print(f"check {arch} {args.model} ({str(dtype).replace('torch.', '')}, {device.type}) against cached_generate.py, "
          f"greedy, steps = gen, dream alg {args.dream_alg}, eps {args.eps}")

    # the forward itself: lean full forward vs the reference model, and a dual cached step vs the full rows
    L = 40
    gx = torch.Generator().manual_seed(7)
    ids = torch.randint(0, lean.vocab - 1, (1, L), generator=gx)
    ids[ids == lean.mask_id] = lean.mask_id - 1
    lean.set_length(L)
    with torch.inference_mode():
        full = lean.forward(ids.to(device), 0, "full", None, 0, *lean.tables)[0].cpu()
        rf = (ref(ids) if arch == "llada" else ref(ids, shift=False))[0]
        buf = KVBuffer(lean, L)
        lean.forward(ids.to(device), 0, "full", buf, L, *lean.tables)
        cached = lean.forward(ids[:, 16:24].to(device), 16, "cached", buf, 0, *lean.tables)[0].cpu()
    d_ref = float((full.double() - rf.double()).abs().max())
    d_cache = float((cached.double() - full[16:24].double()).abs().max())
    print(f"  forward: max|lean - reference| = {d_ref:.3e}, max|dual cached rows - full rows| = {d_cache:.3e}")
    failures = 0
    differs_from_none = set()
    if d_ref > 1e-3 or d_cache > 1e-3:
        print("  FAIL: the lean forward is not the reference forward")
        failures += 1

    for ci, (P, gen, block, prompt_masks) in enumerate(CHECK_CASES):
        if prompt_masks and arch != "llada":
            continue
        L = P + gen
        g = torch.Generator().manual_seed(100 + ci)
        prompt = torch.randint(0, lean.vocab - 1, (P,), generator=g)
        prompt[prompt == lean.mask_id] = lean.mask_id - 1
        for p in prompt_masks:
            prompt[p] = lean.mask_id
        x_init = torch.cat([prompt, torch.full((gen,), lean.mask_id, dtype=torch.long)])[None].to(device)
        lean.set_length(L)
        ref_none = None
        for cache in modes:
            with torch.inference_mode():
                x, nfe = generate(lean, x_init, P, gen, block, cache, dream_alg=args.dream_alg, eps=args.eps,
                                  break_check=not args.no_break_check, prompt_has_mask=bool(prompt_masks))
            if arch == "llada":
                r = cg.generate_llada_cached(ref, prompt.tolist(), steps=gen, gen_length=gen, block_length=block,
                                             cache=cache)
            else:
                r = cg.generate_dream_cached(ref, prompt.tolist(), gen_length=gen, steps=gen, block_length=block,
                                             alg=args.dream_alg, eps=args.eps, cache=cache)
            got = x[0].tolist()
            if cache == "none":
                ref_none = r.tokens
            elif ref_none is not None and r.tokens != ref_none:
                differs_from_none.add(cache)
            ok = got == r.tokens and nfe == r.nfe
            diff = sum(a != b for a, b in zip(got, r.tokens))
            print(f"  prompt {P:2d} gen {gen:2d} block {block:2d}{' prompt masks' if prompt_masks else '':13s} "
                  f"{cache:>6s}: nfe {nfe:3d} (ref {r.nfe:3d}) tokens {'equal' if got == r.tokens else f'{diff} differ'}"
                  f"{'' if cache == 'none' or ref_none is None else ('  != none' if r.tokens != ref_none else '  == none')}"
                  f"  min_margin {r.min_margin:.2e}  {'ok' if ok else 'FAIL'}")
            failures += 0 if ok else 1
    if "none" in modes:
        for cache in modes:
            if cache != "none" and cache not in differs_from_none:
                print(f"  note: cache {cache} gave cache none's tokens in every case (its cache use is not tested)")
    print("check passed" if failures == 0 else f"check FAILED ({failures})")
    return 0 if failures == 0 else 1


# ----------------------------------------------------------------------------- CLI
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint directory")
    src.add_argument("--preset", choices=sorted(make_checkpoint.PRESETS))
    ap.add_argument("--tokens", default="4096", help="comma-separated total lengths L (prompt + gen)")
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--cache", default="none,prefix,dual", help="comma-separated: none, prefix, dual "
                    "(the first is the speedup baseline)")
    ap.add_argument("--dream-alg", default="entropy", choices=["entropy", "maskgit_plus"],
                    help="Dream's confidence (Fast-dLLM's block sampler always uses entropy)")
    ap.add_argument("--eps", type=float, default=1e-3, help="Dream's linspace(1, eps) end")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations before the timed ones")
    ap.add_argument("--warmup-blocks", type=int, default=1, help="blocks per warmup generation (0 = all)")
    ap.add_argument("--iters", type=int, default=1, help="timed whole generations (median reported)")
    ap.add_argument("--no-break-check", action="store_true",
                    help="drop the official loops' per-step 'block full?' host sync")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench_generate.json")
    ap.add_argument("--check", action="store_true",
                    help="CPU float32 on a tiny fixture: tokens must equal cached_generate.py's")
    args = ap.parse_args()

    if args.gen <= 0 or args.block <= 0 or args.gen % args.block:
        ap.error(f"--gen ({args.gen}) must be a positive multiple of --block ({args.block})")
    if args.iters < 1 or args.warmup < 0 or args.warmup_blocks < 0:
        ap.error("--iters must be >= 1, --warmup and --warmup-blocks >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available (use --device cpu for a smoke test)")
    dtype = st_io.parse_dtype(args.dtype)
    with torch.inference_mode():
        if args.check:
            sys.exit(check(args, device, dtype))
        bench(args, device, dtype)


if __name__ == "__main__":
    main()
