"""The PyTorch peer for benchmarking mosaic on LLaDA2.0-mini (model_type llada2_moe): the official HF
modeling code's inference path (modeling_llada2_moe.py as inclusionAI/LLaDA2.0-mini ships it, with
transformers 4.57's sdpa attention) re-expressed in plain PyTorch, on one GPU.

    python3 tools/reference/bench_llada2.py --preset llada2-mini --tokens 4096,16384,32768 --max-tokens
    python3 tools/reference/bench_llada2.py --preset llada2-mini --tokens '' --generate --gen-context 4096
    python3 tools/reference/bench_llada2.py --model /tmp/ckpt-llada2-mini --tokens 4096 --moe grouped
    python3 tools/reference/bench_llada2.py --self-check [--mosaic-bin /work/build-cpu/bin/mosaic]

Sources (read, not copied): ZHZisZZ/dllm @ d8cc1190 dllm/pipelines/llada2/models/modeling_llada2_moe.py
(the HF file as shipped; its later commit 62ebe4f3 adds the temperature-0 argmax used here),
ims-kdks/TIDE model/modeling_llada2_moe.py, transformers 4.57 modeling_attn_mask_utils.py
(_prepare_4d_causal_attention_mask_for_sdpa, AttentionMaskConverter._unmask_unattended) and
integrations/sdpa_attention.py (sdpa_attention_forward); docs/notes/moe_models.md.

The model, op for op as the official forward runs it in bf16 (module -> function here):
  LLaDA2MoeModel.forward      embedding; the 4-D mask through _prepare_4d_causal_attention_mask_for_sdpa
                              (returned as given, then on CUDA _unmask_unattended: mask.mul(~all(mask ==
                              finfo(bf16).min, -1)), a fresh [1, 1, L, L] copy per forward); rotary cos/sin
                              (float32 angles, cast to bf16); the layers; final RMSNorm
  LLaDA2MoeAttention.forward  fused query_key_value, view/split/transpose, q/k RMSNorm, partial rope, then
                              sdpa_attention_forward: with a mask, repeat_kv (k, v expanded to all heads),
                              F.scaled_dot_product_attention(q, k, v, attn_mask=bf16 additive 0/-inf mask,
                              scale=hd^-0.5, is_causal=False), transpose, dense
  LLaDA2MoeGate.forward       float32 router: sigmoid, + expert_bias, group-limited top-k (topk), weights
                              from the unbiased scores normalised and * routed_scaling_factor
  LLaDA2MoeSparseMoeBlock     eval: moe_infer (below) + shared_experts(identity)
  LLaDA2MoeModelLM.forward    logits = lm_head(h).float() over every row of the window
  generate()                  the block-causal mask tril(ones(nb, nb)).repeat_interleave(B, 0)
                              .repeat_interleave(B, 1)[None, None].log().to(bfloat16) (additive 0 / -inf,
                              [1, 1, T, T], built once per generate() call); blocks from position 0; the
                              window x[:, :(b+1)B] each step (uncached); the per-step sampling and commit

--moe (two executions of the same math; the weights are shared, see "Weights"):
  loop     the official moe_infer, structure and ops kept: cnts.scatter_ -> tokens_per_expert;
           idxs = topk_ids.view(-1).argsort(); sorted_tokens = x[idxs // k]; tokens_per_expert.cpu()
           (a host sync per MoE layer); for every expert with tokens: down(silu(gate(t)) * up(t)) on its
           slice (three F.linear, as the nn.Linear modules); torch.cat; new_x[idxs] = outs; float32
           weighted sum over the k slots; + shared expert
  grouped  the same routing, sort and combine, the experts as three grouped GEMMs over the sorted rows:
           torch._grouped_mm(sorted_tokens, W[E, out, in].transpose(-2, -1), offs=cumsum(counts) int32)
           (CUTLASS bf16 kernel on sm90) when it exists and passes a start-up check against per-group
           matmuls; else "padded_bmm": tokens scattered into [E, max_count, d] and torch.bmm (one host
           sync for max_count). The JSON's grouped_impl says which ran.

Weights: random weights of the real shapes built directly on the device with make_checkpoint.py's
per-tensor generators (init_tensor(spec, seed, index)), so they equal the checkpoint
`make_checkpoint.py --preset llada2-mini --device cuda` writes (mosaic reads that one), or loaded from
--model DIR. Every MoE layer's experts live in three stacked tensors [E, fe, d], [E, fe, d], [E, d, fe]
(each expert's tensor is generated / loaded and copied into its slice); the loop variant runs on the
per-expert slices (contiguous views, the same strides as separate nn.Linear weights), the grouped one
on the stacks: one copy of the ~28.5 GiB of experts serves both, nothing is duplicated or freed
between variants, so --max-tokens is not skewed. expert_bias stays float32 (the checkpoint's values,
as mosaic reads them); --hf-bf16-expert-bias rounds it to bf16 as HF from_pretrained(torch_dtype=bf16)
would (the buffer is created in the default dtype).

Measurements (bf16, CUDA events, median of --iters after --warmup):
  step      at each --tokens L (rounded up to whole blocks): the step that denoises the block ending at
            L. x = mosaic bench's sequence (its std::mt19937(1234) prompt of L - 32 tokens, then the
            last block's 32 masks; --gen N: N masks); the mask built as generate() builds it for total
            length L (untimed: once per generation; resident in the measured peak); one iteration of
            generate()'s step loop on the last block: mask check, forward over x[:, :L],
            logits, temperature-0 sampling of the block, threshold (--threshold 0.95) / top-k commit.
            As in generate()'s loop, the previous step's float32 logits [1, L, vocab] stay referenced
            while the next forward runs (its local `logits` is rebound only when the forward returns):
            the timed steps hold the real previous ones. Peak = torch.cuda.max_memory_allocated over the
            timed steps (weights, mask and held logits included).
  max       --max-tokens: from the largest L that ran, double until OOM, bisect to --granularity; each
            probe builds the mask and runs one step while holding a float32 [1, L, vocab] tensor in
            place of the previous step's logits (a generate() at that length needs all three); the
            phase that ran out of memory (mask / step) is reported. --max-variant picks the variant
            (auto: the faster at the largest L that ran both).
  generate  --generate: the official generate(), uncached, on a prompt of P = --gen-context - --gen-length
            tokens (mosaic bench --cache's prompt: std::mt19937(1234) % min(vocab, mask_id)); gen_length
            256, block_length 32, steps 32 per block, threshold 1.0 (never reached: one token per step, the
            schedule mosaic's `bench --cache none,prefix` runs for LLaDA2), temperature 0, eos_early_stop
            off. The prompt's blocks count from position 0; blocks P // 32 .. are denoised. Reports seconds,
            tokens/s, forwards and the generated ids (JSON). Temperature 0 is argmax(softmax) (the fixed
            code of dllm 62ebe4f3 / LLaDA2.1; the HF LLaDA2.0 file samples with multinomial even then).

--self-check (CPU, float32): the tiny fixture and a wider random config, both MoE variants (the
padded-bmm fallback, and the grouped path with an emulated _grouped_mm where torch lacks it) against
tools/reference/llada2.py's logits, the preset builder against make_checkpoint.random_tensors, this
generate() against llada2_generate.generate(), the mt19937 prompt against the C++ standard's value and,
with --mosaic-bin, against mosaic's CPU generation on the fixture. Exit 1 on a failure.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_checkpoint  # noqa: E402
import st_io  # noqa: E402
from llada2 import LLaDA2Config  # noqa: E402

OOM_ERRORS = (torch.cuda.OutOfMemoryError,) if hasattr(torch.cuda, "OutOfMemoryError") else ()
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
EXPERT_RE = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight")
PROJ = {"gate": 0, "up": 1, "down": 2}


def _version_at_least(major: int, minor: int) -> bool:
    try:
        v = torch.__version__.split("+")[0].split(".")
        return (int(v[0]), int(re.match(r"\d+", v[1]).group())) >= (major, minor)
    except Exception:  # noqa: BLE001
        return False


# SDPA with scale= (torch >= 2.1); torch 1.13 (this CPU) gets the same math written out.
HAS_SDPA = hasattr(F, "scaled_dot_product_attention") and _version_at_least(2, 1)


def is_oom(e: BaseException) -> bool:
    return isinstance(e, OOM_ERRORS) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


class Timer:
    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            self.a = torch.cuda.Event(enable_timing=True)
            self.b = torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.b.record()
            torch.cuda.synchronize()
            self.ms = self.a.elapsed_time(self.b)
        else:
            self.ms = (time.perf_counter() - self.t) * 1e3


# ============================================================================ prompts (mosaic's)
def mt19937_u32(seed: int, n: int) -> np.ndarray:
    """The first n outputs of std::mt19937(seed) (numpy's legacy RandomState seeds with the same
    init_genrand, and a full-range uint32 draw returns the raw outputs)."""
    return np.random.RandomState(seed).randint(0, 2**32, size=n, dtype=np.uint32)


def mosaic_prompt(cfg: LLaDA2Config, n: int) -> List[int]:
    """mosaic bench's random prompt (src/cli/bench_generation.cpp random_prompt, bench_measure.cpp
    bench_sequence): std::mt19937 rng(1234); token = rng() % min(vocab_size, mask_token_id)."""
    vocab = min(cfg.vocab_size, cfg.mask_token_id if cfg.mask_token_id > 0 else cfg.vocab_size)
    return (mt19937_u32(1234, n).astype(np.uint64) % np.uint64(vocab)).astype(np.int64).tolist()


# ============================================================================ weights
class Weights:
    """Non-expert tensors by their official names, plus per MoE layer the stacked experts
    (gate [E, fe, d], up [E, fe, d], down [E, d, fe]); each expert's tensors are views of the stacks."""

    def __init__(self, t: Dict[str, torch.Tensor], experts: Dict[int, Tuple[torch.Tensor, ...]]):
        self.t = t
        self.experts = experts
        self.expert_views = {i: [(g[e], u[e], dn[e]) for e in range(g.shape[0])] for i, (g, u, dn) in experts.items()}

    def nbytes(self) -> Tuple[int, int]:
        other = sum(v.numel() * v.element_size() for v in self.t.values())
        ex = sum(w.numel() * w.element_size() for ws in self.experts.values() for w in ws)
        return other + ex, ex


def _expert_stacks(c: LLaDA2Config, dtype, device) -> Dict[int, Tuple[torch.Tensor, ...]]:
    E, fe, d = c.num_experts, c.moe_intermediate_size, c.hidden_size
    return {i: (torch.empty(E, fe, d, dtype=dtype, device=device), torch.empty(E, fe, d, dtype=dtype, device=device),
                torch.empty(E, d, fe, dtype=dtype, device=device))
            for i in range(c.num_hidden_layers) if c.is_moe(i)}


def build_weights(cfg: dict, dtype, device, seed: int = 0, model_dir: Optional[str] = None,
                  bias_dtype=torch.float32, log=print) -> Weights:
    """--preset: every tensor from make_checkpoint.init_tensor(spec, seed, index, device) (the values
    make_checkpoint.py writes); --model: loaded from the checkpoint. Experts go into their stacks."""
    c = LLaDA2Config(cfg)
    dtype = st_io.parse_dtype(dtype)
    device = torch.device(device)
    specs = make_checkpoint.tensor_specs(cfg, dtype)
    experts = _expert_stacks(c, dtype, device)
    t: Dict[str, torch.Tensor] = {}

    def place(name: str, value: torch.Tensor):
        m = EXPERT_RE.fullmatch(name)
        if m:
            layer, e, p = int(m.group(1)), int(m.group(2)), PROJ[m.group(3)]
            dst = experts[layer][p][e]
            if tuple(value.shape) != tuple(dst.shape):
                raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {tuple(dst.shape)}")
            dst.copy_(value)
        elif name.endswith("expert_bias"):
            t[name] = value.to(device=device, dtype=bias_dtype)
        else:
            t[name] = value.to(device=device, dtype=dtype)

    if model_dir is None:
        for i, spec in enumerate(specs):
            place(spec[0], make_checkpoint.init_tensor(spec, seed, i, device))
    else:
        from safetensors import safe_open

        want = {s[0] for s in specs}
        seen = set()
        by_file: Dict[str, List[str]] = {}
        for name, path in st_io.weight_files(model_dir).items():
            by_file.setdefault(path, []).append(name)
        for k, (path, names) in enumerate(sorted(by_file.items())):
            with safe_open(path, framework="pt") as f:
                for n in names:
                    if n not in want:
                        continue
                    place(n, f.get_tensor(n).to(device))
                    seen.add(n)
            if log and len(by_file) > 1:
                log(f"  loaded {os.path.basename(path)} ({k + 1}/{len(by_file)})")
        missing = sorted(want - seen)
        if missing:
            raise ValueError(f"{model_dir}: {len(missing)} tensors missing, e.g. {missing[:3]}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Weights(t, experts)


# ============================================================================ grouped GEMM
def grouped_mm_emulated(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """torch._grouped_mm's 2-D x 3-D semantics written out: rows [offs[g-1], offs[g]) of a times b[g]."""
    out = a.new_empty(a.shape[0], b.shape[-1])
    start = 0
    for g, end in enumerate(offs.tolist()):
        if end > start:
            out[start:end] = a[start:end] @ b[g]
        start = end
    return out


def check_grouped_mm(device, dtype) -> Tuple[bool, str]:
    """torch._grouped_mm on this device and dtype against per-group matmuls (a zero group included)."""
    if not hasattr(torch, "_grouped_mm"):
        return False, "torch has no _grouped_mm"
    try:
        g = torch.Generator(device=device)
        g.manual_seed(7)
        counts = [5, 0, 37, 1, 64, 16, 0, 3]
        K, N = 256, 128
        a = torch.randn(sum(counts), K, device=device, generator=g).to(dtype)
        b = torch.randn(len(counts), N, K, device=device, generator=g).to(dtype).transpose(-2, -1)
        offs = torch.tensor(np.cumsum(counts), dtype=torch.int32, device=device)
        got = torch._grouped_mm(a, b, offs=offs).float()
        want = grouped_mm_emulated(a.float(), b.float(), offs)
        err = float((got - want).abs().max() / want.abs().max())
        if not err < 2e-2:
            return False, f"torch._grouped_mm differs from per-group matmuls (rel err {err:.2e})"
        return True, f"torch._grouped_mm ok (rel err {err:.1e})"
    except Exception as e:  # noqa: BLE001
        return False, f"torch._grouped_mm failed: {type(e).__name__}: {str(e)[:200]}"


# ============================================================================ the official model
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaDA2MoeRMSNorm.forward."""
    input_dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return weight * x.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    rd = cos.shape[-1]
    q_rot, q_pass = q[..., :rd], q[..., rd:]
    k_rot, k_pass = k[..., :rd], k[..., rd:]
    q_embed = (q_rot * cos) + (rotate_half(q_rot) * sin)
    k_embed = (k_rot * cos) + (rotate_half(k_rot) * sin)
    return torch.cat([q_embed, q_pass], dim=-1), torch.cat([k_embed, k_pass], dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    b, kvh, s, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, s, hd).reshape(b, kvh * n_rep, s, hd)


def unmask_unattended(mask: torch.Tensor, min_dtype: float) -> torch.Tensor:
    """AttentionMaskConverter._unmask_unattended: rows that attend nowhere attend everywhere."""
    return mask.mul(~torch.all(mask == min_dtype, dim=-1, keepdim=True))


def prepare_4d_mask_for_sdpa(mask: torch.Tensor, embeds: torch.Tensor, force_unmask: bool = False) -> torch.Tensor:
    """_prepare_4d_causal_attention_mask_for_sdpa with generate()'s 4-D mask: kept as given (a 4-D
    mask is never ignored), then, on CUDA (not tracing), _unmask_unattended."""
    if mask.device.type == "cuda" or force_unmask:
        mask = unmask_unattended(mask, torch.finfo(embeds.dtype).min)
    return mask


def block_diffusion_mask(num_blocks: int, block_length: int, device) -> torch.Tensor:
    """generate()'s block_diffusion_attention_mask: [1, 1, T, T] bf16, 0 (attend) / -inf."""
    block_mask = torch.tril(torch.ones(num_blocks, num_blocks, device=device))
    return (block_mask.repeat_interleave(block_length, dim=0).repeat_interleave(block_length, dim=1)
            .unsqueeze(0).unsqueeze(0)).log().to(torch.bfloat16)


class OfficialLLaDA2:
    """The official inference forward (see the module docstring); moe = loop | grouped."""

    def __init__(self, cfg: dict, w: Weights, grouped_impl: str = "grouped_mm"):
        self.cfg = LLaDA2Config(cfg)
        self.w = w
        c = self.cfg
        emb = w.t["model.word_embeddings.weight"]
        self.dtype, self.device = emb.dtype, emb.device
        self.moe = "loop"
        self.grouped_impl = grouped_impl      # grouped_mm | padded_bmm | emulated
        rd = c.rotary_dim
        # transformers _compute_default_rope_parameters: dim = int(head_dim * partial_rotary_factor)
        self.inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.int64)
                                                .to(device=self.device, dtype=torch.float) / rd))
        self.force_unmask = False             # self-check: run _unmask_unattended on the CPU too

    @property
    def mask_token_id(self):
        return self.cfg.mask_token_id

    @property
    def eos_token_id(self):
        return self.cfg.eos_token_id

    def T(self, i: int, name: str) -> torch.Tensor:
        return self.w.t[f"model.layers.{i}.{name}"]

    # LLaDA2MoeRotaryEmbedding.forward
    def rotary(self, x: torch.Tensor, position_ids: torch.Tensor):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1).to(x.device)
        pos = position_ids[:, None, :].float()
        freqs = (inv.float() @ pos.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * 1.0).to(dtype=x.dtype), (emb.sin() * 1.0).to(dtype=x.dtype)

    # LLaDA2MoeAttention.forward + sdpa_attention_forward
    def attention(self, i: int, h: torch.Tensor, mask: torch.Tensor, cos, sin) -> torch.Tensor:
        c = self.cfg
        H, KV, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        bsz, q_len, _ = h.shape
        qkv = F.linear(h, self.T(i, "attention.query_key_value.weight"))
        qkv = qkv.view(bsz, q_len, H + 2 * KV, hd)
        q, k, v = qkv.split([H, KV, KV], dim=-2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if c.use_qk_norm:
            q = rms_norm(q, self.T(i, "attention.query_layernorm.weight"), c.rms_norm_eps)
            k = rms_norm(k, self.T(i, "attention.key_layernorm.weight"), c.rms_norm_eps)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        # sdpa_attention_forward: with a mask no enable_gqa (use_gqa_in_sdpa needs mask None): repeat_kv
        k = repeat_kv(k, H // KV)
        v = repeat_kv(v, H // KV)
        m = mask[:, :, :, : k.shape[-2]]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scale = hd ** -0.5
        if HAS_SDPA:
            if m.dtype != torch.bool and m.dtype != q.dtype:
                m = m.to(q.dtype)             # float32 runs only (the mask is bf16; 0 / -inf exact)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=0.0, scale=scale, is_causal=False)
        else:                                 # torch < 2.1: the math SDPA computes
            s = torch.matmul(q, k.transpose(-1, -2)) * scale + m.to(q.dtype)
            o = torch.matmul(torch.softmax(s.float(), dim=-1).to(q.dtype), v)
        o = o.transpose(1, 2).contiguous()
        o = o.reshape(bsz, q_len, -1).contiguous()
        return F.linear(o, self.T(i, "attention.dense.weight"))

    # LLaDA2MoeMLP.forward
    @staticmethod
    def mlp(x, wg, wu, wd):
        return F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)

    # LLaDA2MoeGate.forward + group_limited_topk
    def gate(self, i: int, h: torch.Tensor):
        c = self.cfg
        h = h.view(-1, h.shape[-1])
        logits = F.linear(h.type(torch.float32), self.T(i, "mlp.gate.weight").type(torch.float32))
        scores = torch.sigmoid(logits.float()).type_as(logits)
        bias = self.w.t.get(f"model.layers.{i}.mlp.gate.expert_bias")
        scores_for_routing = scores + bias if bias is not None else scores
        n = scores_for_routing.shape[0]
        E, G = c.num_experts, c.n_group
        group_scores = scores_for_routing.view(n, G, -1).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=c.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores)
        group_mask.scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(n, G, E // G).reshape(n, -1)
        masked = scores_for_routing.masked_fill(~score_mask.bool(), float("-inf"))
        _, topk_idx = torch.topk(masked, k=c.num_experts_per_tok, dim=-1)
        s = torch.gather(scores, dim=1, index=topk_idx).type_as(logits)
        w = s / (s.sum(dim=-1, keepdim=True) + 1e-20) if c.num_experts_per_tok > 1 else s
        return topk_idx, w * c.routed_scaling_factor

    @staticmethod
    def combine(new_x, topk_ids, topk_weight):
        return (new_x.view(*topk_ids.shape, -1).type(topk_weight.dtype).mul_(topk_weight.unsqueeze(dim=-1))
                .sum(dim=1).type(new_x.dtype))

    # LLaDA2MoeSparseMoeBlock.moe_infer
    def moe_infer_loop(self, i, x, topk_ids, topk_weight):
        views = self.w.expert_views[i]
        cnts = topk_ids.new_zeros((topk_ids.shape[0], len(views)))
        cnts.scatter_(1, topk_ids, 1)
        tokens_per_expert = cnts.sum(dim=0)
        idxs = topk_ids.view(-1).argsort()
        sorted_tokens = x[idxs // topk_ids.shape[1]]
        tokens_per_expert = tokens_per_expert.cpu().numpy()
        outputs = []
        start_idx = 0
        for e, num_tokens in enumerate(tokens_per_expert):
            num_tokens = num_tokens.item()
            if num_tokens == 0:
                continue
            end_idx = start_idx + num_tokens
            wg, wu, wd = views[e]
            outputs.append(self.mlp(sorted_tokens[start_idx:end_idx], wg, wu, wd).to(x.device))
            start_idx = end_idx
        outs = torch.cat(outputs, dim=0) if len(outputs) else sorted_tokens.new_empty(0)
        new_x = torch.empty_like(outs)
        new_x[idxs] = outs
        return self.combine(new_x, topk_ids, topk_weight)

    # the same math, grouped GEMMs over the sorted rows
    def moe_infer_grouped(self, i, x, topk_ids, topk_weight):
        Wg, Wu, Wd = self.w.experts[i]
        E = Wg.shape[0]
        flat = topk_ids.view(-1)
        idxs = flat.argsort()
        sorted_tokens = x[idxs // topk_ids.shape[1]]
        counts = torch.bincount(flat, minlength=E)
        if self.grouped_impl == "padded_bmm":
            sorted_ids = flat[idxs]
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(flat.numel(), device=x.device) - starts[sorted_ids]
            cap = int(counts.max())
            padded = sorted_tokens.new_zeros(E, cap, x.shape[-1])
            padded[sorted_ids, slot] = sorted_tokens
            g = torch.bmm(padded, Wg.transpose(1, 2))
            u = torch.bmm(padded, Wu.transpose(1, 2))
            del padded
            o = torch.bmm(F.silu(g) * u, Wd.transpose(1, 2))
            del g, u
            outs = o[sorted_ids, slot]
            del o
        else:
            gmm = torch._grouped_mm if self.grouped_impl == "grouped_mm" else grouped_mm_emulated
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            g = gmm(sorted_tokens, Wg.transpose(-2, -1), offs=offs)
            u = gmm(sorted_tokens, Wu.transpose(-2, -1), offs=offs)
            a = F.silu(g) * u
            del g, u
            outs = gmm(a, Wd.transpose(-2, -1), offs=offs)
            del a
        new_x = torch.empty_like(outs)
        new_x[idxs] = outs
        return self.combine(new_x, topk_ids, topk_weight)

    # LLaDA2MoeSparseMoeBlock.forward (eval)
    def sparse_moe(self, i: int, h: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        identity = h
        bsz, seq_len, d = h.shape
        topk_idx, topk_weight = self.gate(i, h)
        hf = h.view(-1, d)
        infer = self.moe_infer_loop if self.moe == "loop" else self.moe_infer_grouped
        y = infer(i, hf, topk_idx, topk_weight).view(bsz, seq_len, d)
        if c.num_shared_experts:
            p = f"model.layers.{i}.mlp.shared_experts."
            y = y + self.mlp(identity, self.w.t[p + "gate_proj.weight"], self.w.t[p + "up_proj.weight"],
                             self.w.t[p + "down_proj.weight"])
        return y

    # LLaDA2MoeDecoderLayer.forward
    def layer(self, i: int, h: torch.Tensor, mask, cos, sin) -> torch.Tensor:
        c = self.cfg
        residual = h
        h = rms_norm(h, self.T(i, "input_layernorm.weight"), c.rms_norm_eps)
        h = residual + self.attention(i, h, mask, cos, sin)
        residual = h
        h = rms_norm(h, self.T(i, "post_attention_layernorm.weight"), c.rms_norm_eps)
        if c.is_moe(i):
            h = self.sparse_moe(i, h)
        else:
            h = self.mlp(h, self.T(i, "mlp.gate_proj.weight"), self.T(i, "mlp.up_proj.weight"),
                         self.T(i, "mlp.down_proj.weight"))
        return residual + h

    # LLaDA2MoeModelLM.forward -> logits (float32)
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        bsz, seq_len = input_ids.shape
        if tuple(attention_mask.shape) != (bsz, 1, seq_len, seq_len):
            raise ValueError(f"LLaDA2.0 takes a block attention mask of shape {(bsz, 1, seq_len, seq_len)}")
        h = F.embedding(input_ids, self.w.t["model.word_embeddings.weight"])
        mask = prepare_4d_mask_for_sdpa(attention_mask, h, self.force_unmask)
        cos, sin = self.rotary(h, position_ids)
        for i in range(c.num_hidden_layers):
            h = self.layer(i, h, mask, cos, sin)
        del mask
        h = rms_norm(h, self.w.t["model.norm.weight"], c.rms_norm_eps)
        head = self.w.t["model.word_embeddings.weight"] if c.tie_word_embeddings else self.w.t["lm_head.weight"]
        logits = F.linear(h, head)
        return logits.float()


# ============================================================================ generate() pieces
def sample_with_temperature_topk_topp(logits, temperature=1.0, top_k=0, top_p=1.0):
    """_sample_with_temperature_topk_topp (temperature 0: argmax of the softmax, the fixed code)."""
    orig_shape = logits.shape[:-1]
    V = logits.shape[-1]
    logits = logits.reshape(-1, V)
    if temperature == 0.0:
        probs = F.softmax(logits, dim=-1)
        token = torch.argmax(probs, dim=-1, keepdim=True)
        return token.view(*orig_shape), torch.gather(probs, -1, token).view(*orig_shape)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k > 0:
        values, _ = torch.topk(logits, top_k)
        logits = torch.where(logits < values[..., -1, None], torch.full_like(logits, float("-inf")), logits)
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        sm = cum > top_p
        sm[..., 1:] = sm[..., :-1].clone()
        sm[..., 0] = False
        mi = torch.scatter(torch.full_like(logits, False, dtype=torch.bool), -1, sorted_indices, sm)
        logits = logits.masked_fill(mi, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    token = torch.multinomial(probs, num_samples=1)
    return token.view(*orig_shape), torch.gather(probs, -1, token).view(*orig_shape)


def get_num_transfer_tokens(block_length: int, steps: int) -> torch.Tensor:
    if steps == 0:
        return torch.tensor([], dtype=torch.int64)
    base, rem = block_length // steps, block_length % steps
    n = torch.full((steps,), base, dtype=torch.int64)
    n[:rem] += 1
    return n


def denoise_step(model: OfficialLLaDA2, cur_x, cur_attn_mask, cur_position_ids, block_length, step, schedule,
                 threshold, temperature=0.0, top_k=None, top_p=None):
    """One iteration of generate()'s inner loop on the window cur_x (written in place). Returns
    (ran, x0, transfer_index, logits): the caller keeps the logits until the next forward has returned,
    as generate()'s local `logits` lives on through the next iteration's forward."""
    active_block_mask = cur_x[:, -block_length:] == model.mask_token_id
    if active_block_mask.sum() == 0:
        return False, None, None, None
    logits = model.forward(cur_x, cur_attn_mask, cur_position_ids)
    active_logits = logits[:, -block_length:, :]
    x0, x0_p = sample_with_temperature_topk_topp(active_logits, temperature=temperature, top_k=top_k, top_p=top_p)
    num_to_transfer = schedule[step].item()
    transfer_index = torch.zeros_like(x0, dtype=torch.bool)
    confidence = torch.where(active_block_mask, x0_p, -torch.inf)
    high_conf_mask = confidence[0] > threshold
    if high_conf_mask.sum().item() >= num_to_transfer:
        transfer_index[0] = high_conf_mask
    else:
        _, idx = torch.topk(confidence[0], k=min(num_to_transfer, active_block_mask.sum().item()))
        transfer_index[0, idx] = True
    if transfer_index.any():
        cur_x[:, -block_length:][transfer_index] = x0[transfer_index]
    return True, x0, transfer_index, logits


@torch.no_grad()
def official_generate(model: OfficialLLaDA2, inputs: torch.Tensor, temperature: float = 0.0, block_length: int = 32,
                      steps: int = 32, gen_length: int = 2048, top_p=None, top_k=None, eos_early_stop: bool = False,
                      minimal_topk: int = 1, threshold: float = 0.95, eos_id: Optional[int] = None,
                      mask_id: Optional[int] = None, max_forwards: Optional[int] = None) -> dict:
    """LLaDA2MoeModelLM.generate() (uncached: every step runs the window x[:, :block_end]).
    max_forwards: stop after that many forwards (warm-up)."""
    eos_id = model.eos_token_id if eos_id is None else eos_id
    mask_id = model.mask_token_id if mask_id is None else mask_id
    device = model.device
    steps = min(steps, gen_length // minimal_topk)
    input_ids = inputs.to(device)
    prompt_length = input_ids.shape[1]
    num_blocks = (prompt_length + gen_length + block_length - 1) // block_length
    total_length = num_blocks * block_length
    block_diffusion_attention_mask = block_diffusion_mask(num_blocks, block_length, device)
    position_ids = torch.arange(total_length, device=device).unsqueeze(0)
    x = torch.full((1, total_length), mask_id, dtype=torch.long, device=device)
    x[:, :prompt_length] = input_ids.clone()
    prefill_blocks = prompt_length // block_length
    schedule = get_num_transfer_tokens(block_length, steps)
    nfe, stop = 0, "length"
    logits = None    # generate()'s local: the last step's float32 logits stay alive through the next forward

    def result(answer, stop):
        return {"x": x[0].tolist(), "answer": answer[0].tolist(), "nfe": nfe, "stop": stop,
                "prompt_length": prompt_length, "total_length": total_length}

    for num_block in range(prefill_blocks, num_blocks):
        end = (num_block + 1) * block_length
        cur_x = x[:, :end]
        cur_attn_mask = block_diffusion_attention_mask[:, :, :end, :end]
        cur_position_ids = position_ids[:, :end]
        for step in range(steps):
            if max_forwards is not None and nfe >= max_forwards:
                return result(x[:, prompt_length:prompt_length], "warmup")
            ran, x0, transfer_index, new_logits = denoise_step(model, cur_x, cur_attn_mask, cur_position_ids,
                                                               block_length, step, schedule, threshold, temperature,
                                                               top_k, top_p)
            if not ran:
                break
            logits = new_logits  # noqa: F841  (held, as generate() holds it, through the next forward)
            nfe += 1
            if eos_early_stop and (x0[transfer_index] == eos_id).any():
                eos_pos_in_x = (cur_x[0] == eos_id).nonzero(as_tuple=True)
                if len(eos_pos_in_x[0]) > 0:
                    eos_pos = eos_pos_in_x[0][0].item()
                    if (cur_x[0, prompt_length:eos_pos] != mask_id).all():
                        return result(x[:, prompt_length:eos_pos + 1], "eos_early_stop")
        x[:, :end] = cur_x
        if eos_id is not None and (x[0, prompt_length:end] == eos_id).any():
            stop = "eos_block"
            break
    generated_answer = x[:, : prompt_length + gen_length]
    eos_positions = (generated_answer[0][prompt_length:] == eos_id).nonzero(as_tuple=True)[0]
    first = eos_positions[0].item() if len(eos_positions) > 0 else gen_length
    return result(generated_answer[:, prompt_length: prompt_length + first + 1], stop)


# ============================================================================ benchmark
def make_model(args, device, dtype, log=print):
    t0 = time.time()
    bias_dtype = torch.bfloat16 if args.hf_bf16_expert_bias else torch.float32
    if args.model:
        cfg = st_io.read_config(args.model)
        w = build_weights(cfg, dtype, device, model_dir=args.model, bias_dtype=bias_dtype, log=log)
        src = args.model
    else:
        cfg = load_cfg(args)
        w = build_weights(cfg, dtype, device, seed=args.seed, bias_dtype=bias_dtype, log=log)
        src = f"preset {args.preset} (random weights, make_checkpoint seeds, seed {args.seed})" if args.preset \
            else f"config {args.config} (random weights, seed {args.seed})"
    if make_checkpoint.arch_of(cfg) != "llada2_moe":
        raise SystemExit(f"{src}: model_type {cfg.get('model_type')} is not llada2_moe")
    return OfficialLLaDA2(cfg, w), cfg, src, time.time() - t0


def load_cfg(args) -> dict:
    if args.model:
        return st_io.read_config(args.model)
    if args.config:
        with open(args.config) as f:
            return json.load(f)
    return make_checkpoint.PRESETS[args.preset]()


def step_sequence(model: OfficialLLaDA2, L: int, gen: int, device) -> torch.Tensor:
    """mosaic bench's step sequence: the mt19937 prompt of L - gen tokens, then gen masks."""
    gen = min(gen, L - 1)
    x = torch.full((1, L), model.mask_token_id, dtype=torch.long)
    x[0, : L - gen] = torch.tensor(mosaic_prompt(model.cfg, L - gen), dtype=torch.long)
    return x.to(device)


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_length(model: OfficialLLaDA2, L: int, moe: str, args, device, timed: bool = True) -> dict:
    """One length, one MoE variant: setup (sequence + generate()'s mask, untimed), then --warmup and
    --iters steps (timed) or a single untimed step (probe). OOM -> status OOM with its phase."""
    cuda = device.type == "cuda"
    B = args.block
    Lw = (L + B - 1) // B * B
    res = {"tokens": L, "window": Lw, "moe": moe if moe == "loop" else f"grouped:{model.grouped_impl}",
           "masked": min(args.gen or B, Lw - 1), "block": B}
    model.moe = moe
    phase = "mask"
    x0 = mask = pos = held = None
    try:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        x0 = step_sequence(model, Lw, args.gen or B, device)
        mask = block_diffusion_mask(Lw // B, B, device)
        pos = torch.arange(Lw, device=device).unsqueeze(0)
        if cuda:
            torch.cuda.synchronize()
            res["mask_build_peak_bytes"] = torch.cuda.max_memory_allocated()
        res["mask_bytes"] = mask.numel() * mask.element_size()
        schedule = get_num_transfer_tokens(B, args.steps_per_block)
        phase = "step"
        # generate()'s steady state: the previous step's float32 logits [1, L, vocab] are still referenced
        # while the next forward runs. Timed steps hold the real previous ones (after --warmup >= 1); a
        # probe holds a tensor of their size.
        held = {"logits": None}
        if not timed:
            held["logits"] = torch.empty(1, Lw, model.cfg.vocab_size, dtype=torch.float32, device=device)

        def step():
            x = x0.clone()
            with torch.no_grad():
                held["logits"] = denoise_step(model, x, mask, pos, B, 0, schedule, args.threshold,
                                              args.temperature)[3]
            return x

        for _ in range(args.warmup if timed else 1):
            step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.iters if timed else 0):
            with Timer(cuda) as t:
                step()
            times.append(t.ms)
        res["status"] = "ok"
        if times:
            res["ms_per_step"] = statistics.median(times)
            res["ms_all"] = [round(v, 3) for v in times]
        if cuda:
            res["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        res["status"] = "OOM"
        res["oom_phase"] = phase
    x0 = mask = pos = held = None
    free_memory(device)
    return res


def search_max(model, moe, args, device, start_ok: Optional[int], probes: List[dict], deadline: float,
               on_probe: Callable[[int], None]) -> Tuple[int, bool]:
    """From start_ok (or 4096) double until a probe fails, then bisect to --granularity. Returns (the
    largest L that ran, whether the search finished before the deadline)."""
    gran = args.granularity
    state = {"lo": start_ok or 0}

    def ok(L):
        r = run_length(model, L, moe, args, device, timed=False)
        probes.append({"tokens": L, "status": r["status"], "oom_phase": r.get("oom_phase"),
                       "peak_mem_bytes": r.get("peak_mem_bytes"), "mask_build_peak_bytes": r.get("mask_build_peak_bytes")})
        print(f"  probe L={L} ({moe}): {r['status']}" + (f" in the {r['oom_phase']}" if r.get("oom_phase") else ""),
              flush=True)
        if r["status"] == "ok":
            state["lo"] = max(state["lo"], L)
        on_probe(state["lo"])
        return r["status"] == "ok"

    lo, hi = start_ok or 0, None
    if not start_ok:
        L = max(4096, gran)
        if ok(L):
            lo = L
        else:
            hi, lo = L, 0
    while hi is None:
        L = lo * 2
        if L > args.max_cap:
            return lo, True
        if time.time() > deadline:
            return lo, False
        if ok(L):
            lo = L
        else:
            hi = L
    while hi - lo > gran:
        mid = (lo + hi) // 2 // gran * gran
        if mid <= lo:
            break
        if time.time() > deadline:
            return lo, False
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, True


def sdpa_flags() -> dict:
    out = {}
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        f = getattr(torch.backends.cuda, name, None)
        if f is not None:
            out[name.replace("_sdp_enabled", "")] = bool(f())
    return out


def probe_sdpa_kernels(model: OfficialLLaDA2, device, L: int = 2048) -> Optional[List[str]]:
    """The CUDA kernels SDPA runs for the official call (bf16 additive 4-D mask, 16 heads after
    repeat_kv), from the profiler."""
    if device.type != "cuda" or not HAS_SDPA:
        return None
    try:
        from torch.profiler import ProfilerActivity, profile

        c = model.cfg
        q = torch.randn(1, c.num_attention_heads, L, c.head_dim, device=device, dtype=model.dtype)
        mask = prepare_4d_mask_for_sdpa(block_diffusion_mask(L // 32, 32, device), q)
        F.scaled_dot_product_attention(q, q, q, attn_mask=mask, scale=c.head_dim ** -0.5)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            F.scaled_dot_product_attention(q, q, q, attn_mask=mask, scale=c.head_dim ** -0.5)
            torch.cuda.synchronize()
        names = [e.key for e in prof.key_averages()]
        return [n[:120] for n in names if any(s in n.lower() for s in ("fmha", "flash", "attention", "cudnn", "attn", "sdpa"))] or names[:5]
    except Exception as e:  # noqa: BLE001
        return [f"probe failed: {type(e).__name__}: {str(e)[:120]}"]


def fmt(v, spec):
    return "-" if v is None else spec % v


def run_generation(model: OfficialLLaDA2, moe: str, args, device) -> dict:
    cuda = device.type == "cuda"
    c = model.cfg
    P = args.gen_context - args.gen_length
    if P < 1:
        raise SystemExit(f"--gen-context {args.gen_context} leaves no prompt before --gen-length {args.gen_length}")
    prompt = mosaic_prompt(c, P)
    inputs = torch.tensor([prompt], dtype=torch.long)
    model.moe = moe
    kw = dict(temperature=0.0, block_length=args.gen_block, steps=args.gen_steps, gen_length=args.gen_length,
              eos_early_stop=False, minimal_topk=1, threshold=args.gen_threshold)
    res = {"moe": moe if moe == "loop" else f"grouped:{model.grouped_impl}", "gen_context": args.gen_context,
           "prompt_length": P, "gen_length": args.gen_length, "block_length": args.gen_block,
           "steps_per_block": args.gen_steps, "threshold": args.gen_threshold, "temperature": 0.0,
           "eos_early_stop": False, "prompt_source": "mosaic bench --cache: std::mt19937(1234) % min(vocab, mask_id)",
           "prompt_has_eos": c.eos_token_id in prompt, "prompt_has_mask": c.mask_token_id in prompt,
           "first_block": P // args.gen_block}
    try:
        if args.gen_warmup_forwards > 0:
            official_generate(model, inputs, max_forwards=args.gen_warmup_forwards, **kw)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with Timer(cuda) as t:
            r = official_generate(model, inputs, **kw)
        s = t.ms / 1e3
        res.update({"status": "ok", "seconds": s, "tokens_per_s": args.gen_length / s, "forwards": r["nfe"],
                    "ms_per_forward": t.ms / max(r["nfe"], 1), "stop": r["stop"], "total_length": r["total_length"],
                    "answer": r["answer"], "generated": r["x"][P: P + args.gen_length],
                    "window_tail": r["x"][P: r["total_length"]]})
        if cuda:
            res["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        res["status"] = "OOM"
    free_memory(device)
    return res


def bench(args):
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available (use --device cpu --dtype float32 for a smoke test)")
    dtype = st_io.parse_dtype(args.dtype)
    torch.manual_seed(args.seed)
    t_start = time.time()
    model, cfg, src, build_s = make_model(args, device, dtype)
    wbytes, ebytes = model.w.nbytes()
    cuda = device.type == "cuda"
    dev_name = torch.cuda.get_device_name(device) if cuda else "cpu"

    # the grouped variant's implementation
    note = ""
    if args.grouped_impl == "auto":
        if cuda and dtype == torch.bfloat16:
            okg, note = check_grouped_mm(device, dtype)
            model.grouped_impl = "grouped_mm" if okg else "padded_bmm"
        else:
            model.grouped_impl = "padded_bmm"
            note = "grouped_mm needs CUDA bf16 here; padded_bmm"
    else:
        model.grouped_impl = args.grouped_impl
    print(f"llada2_moe from {src}: weights {wbytes / 2**30:.2f} GiB (experts {ebytes / 2**30:.2f} GiB, one copy "
          f"shared by both MoE variants), built in {build_s:.1f} s on {dev_name}; torch {torch.__version__}, "
          f"{str(dtype).replace('torch.', '')}, SDPA {HAS_SDPA}; grouped = {model.grouped_impl} ({note})", flush=True)
    kernels = probe_sdpa_kernels(model, device) if cuda else None
    if kernels:
        print(f"  SDPA kernels for the official masked call: {kernels}", flush=True)

    variants = [v.strip() for v in args.moe.split(",") if v.strip()]
    for v in variants:
        if v not in ("loop", "grouped"):
            raise SystemExit(f"--moe {v}: use loop and/or grouped")
    results: List[dict] = []
    generations: List[dict] = []
    probes: List[dict] = []
    out = {
        "tool": "tools/reference/bench_llada2.py",
        "complete": False,
        "device": dev_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sdpa": HAS_SDPA,
        "sdpa_backends_enabled": sdpa_flags() if cuda else None,
        "sdpa_kernels": kernels,
        "arch": "llada2_moe",
        "model": src,
        "dtype": str(dtype).replace("torch.", ""),
        "weights_bytes": wbytes,
        "expert_weights_bytes": ebytes,
        "experts_layout": "one stacked copy per layer and projection; loop runs on per-expert views of it",
        "expert_bias_dtype": "bfloat16" if args.hf_bf16_expert_bias else "float32",
        "build_seconds": round(build_s, 2),
        "grouped_impl": model.grouped_impl,
        "grouped_impl_note": note,
        "loop_vs_grouped": None,
        "settings": {k: getattr(args, k) for k in (
            "gen", "block", "steps_per_block", "threshold", "temperature", "warmup", "iters", "granularity",
            "moe", "seed", "max_seconds")},
        "results": results,
        "max_tokens": None,
        "max_tokens_variant": None,
        "max_tokens_probes": probes,
        "generation": generations,
    }

    def save():     # after every phase: a run cut short by a timeout still leaves its results
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)

    save()
    if cuda and len(variants) > 1 and args.consistency_tokens > 0:
        # loop and grouped on the same input: the bf16 logits should agree to rounding
        Lc = args.consistency_tokens
        xc = step_sequence(model, Lc, args.gen or args.block, device)
        mk = block_diffusion_mask(Lc // args.block, args.block, device)
        pc = torch.arange(Lc, device=device).unsqueeze(0)
        outs = {}
        with torch.no_grad():
            for v in ("loop", "grouped"):
                model.moe = v
                outs[v] = model.forward(xc, mk, pc)[0, -args.block:].double()
        d = float((outs["loop"] - outs["grouped"]).abs().max())
        agree = float((outs["loop"].argmax(-1) == outs["grouped"].argmax(-1)).double().mean())
        out["loop_vs_grouped"] = {"tokens": Lc, "max_abs_logit_diff_last_block": d,
                                  "argmax_agreement_last_block": agree,
                                  "logit_absmax": float(outs["loop"].abs().max())}
        print(f"  loop vs grouped at L={Lc}: max |dlogits| {d:.3g} (logits up to "
              f"{out['loop_vs_grouped']['logit_absmax']:.2f}), argmax agreement {agree:.3f}", flush=True)
        del outs, xc, mk, pc
        free_memory(device)
        save()

    for L in [int(t) for t in args.tokens.split(",") if t.strip()]:
        for v in variants:
            r = run_length(model, L, v, args, device)
            results.append(r)
            pm = r.get("peak_mem_bytes")
            print(f"  L={L} {r['moe']:>18s}: {r['status']}{' (' + r['oom_phase'] + ')' if r.get('oom_phase') else ''} "
                  f"ms/step {fmt(r.get('ms_per_step'), '%.1f')} peak GiB {fmt(pm / 2**30 if pm else None, '%.2f')}",
                  flush=True)
            save()

    if args.generate:
        for v in [m.strip() for m in args.gen_moe.split(",") if m.strip()]:
            g = run_generation(model, v, args, device)
            generations.append(g)
            print(f"  generate() uncached, {g['moe']}, P={g['prompt_length']} + {args.gen_length}: {g['status']} "
                  f"{fmt(g.get('seconds'), '%.2f')} s, {fmt(g.get('tokens_per_s'), '%.2f')} tok/s, "
                  f"{g.get('forwards', '-')} forwards ({fmt(g.get('ms_per_forward'), '%.1f')} ms each); "
                  f"first tokens {g.get('generated', [])[:8]}", flush=True)
            save()

    if args.max_tokens:
        max_variant = args.max_variant
        if max_variant == "auto":
            both: Dict[int, Dict[str, float]] = {}
            for r in results:
                if r["status"] == "ok":
                    both.setdefault(r["window"], {})[r["moe"].split(":")[0]] = r["ms_per_step"]
            full = [L for L, d in both.items() if len(d) == 2]
            max_variant = min(both[max(full)], key=both[max(full)].get) if full else \
                ("grouped" if "grouped" in variants else variants[0])
        out["max_tokens_variant"] = max_variant
        oks = [r["window"] for r in results if r["status"] == "ok" and r["moe"].split(":")[0] == max_variant]
        start = max(oks) if oks else None       # a whole number of blocks, as every probe
        deadline = time.time() + args.max_seconds

        def on_probe(lo):
            out["max_tokens"] = lo
            save()

        lo, finished = search_max(model, max_variant, args, device, start, probes, deadline, on_probe)
        out["max_tokens"] = lo
        out["max_tokens_search_complete"] = finished
        print(f"  largest L that runs ({max_variant}): {lo} (granularity {args.granularity}"
              f"{'' if finished else '; search stopped by --max-seconds: a lower bound'})", flush=True)

    out["complete"] = True
    out["seconds_total"] = round(time.time() - t_start, 1)
    save()
    print()
    if results:
        print(f"{'tokens':>8s} {'moe':>18s} {'status':>6s} {'ms/step':>9s} {'peak GiB':>9s} {'act GiB':>8s} {'mask GiB':>8s}")
        for r in results:
            pm = r.get("peak_mem_bytes")
            print(f"{r['tokens']:8d} {r['moe']:>18s} {r['status']:>6s} {fmt(r.get('ms_per_step'), '%.1f'):>9s} "
                  f"{fmt(pm / 2**30 if pm else None, '%.2f'):>9s} {fmt((pm - wbytes) / 2**30 if pm else None, '%.2f'):>8s} "
                  f"{fmt(r['mask_bytes'] / 2**30 if r.get('mask_bytes') else None, '%.2f'):>8s}")
    if out["max_tokens"] is not None:
        print(f"max tokens ({out['max_tokens_variant']}): {out['max_tokens']}")
    for g in generations:
        print(f"generate() uncached {g['moe']}: {g['status']} {fmt(g.get('seconds'), '%.2f')} s "
              f"{fmt(g.get('tokens_per_s'), '%.2f')} tok/s, {g.get('forwards', '-')} forwards")
    print(f"wrote {args.json}")


# ============================================================================ self-check (CPU)
def wide_random_cfg() -> dict:
    """A small config with more experts than the fixture (64 in 8 groups, top-6 of 3 groups), GQA,
    partial rope, 2 shared experts, a dense first layer."""
    return {
        "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe", "hidden_size": 96,
        "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 32,
        "intermediate_size": 160, "moe_intermediate_size": 32, "num_experts": 64, "num_experts_per_tok": 6,
        "num_shared_experts": 2, "n_group": 8, "topk_group": 3, "routed_scaling_factor": 2.5,
        "first_k_dense_replace": 1, "partial_rotary_factor": 0.5, "rope_theta": 600000, "rope_scaling": None,
        "rms_norm_eps": 1e-6, "vocab_size": 512, "tie_word_embeddings": False, "use_bias": False,
        "use_qkv_bias": False, "score_function": "sigmoid", "router_dtype": "fp32",
        "moe_router_enable_expert_bias": True, "norm_head": False, "use_sliding_window": False,
        "hidden_act": "silu", "pad_token_id": 508, "max_position_embeddings": 1024, "use_qk_norm": True,
        "mask_token_id": 511, "eos_token_id": 508,
    }


def self_check(args) -> int:
    from llada2 import LLaDA2
    import llada2_generate

    torch.manual_seed(0)
    fails: List[str] = []
    tol = args.check_tol

    def report(name, ok, detail):
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        if not ok:
            fails.append(name)

    # mosaic's prompt generator: std::mt19937's required 10000th output (C++ [rand.predef]) for the default seed
    v = mt19937_u32(5489, 10000)
    report("mt19937", int(v[-1]) == 4123659995 and int(v[0]) == 3499211612,
           f"std::mt19937(5489): 1st {int(v[0])} (want 3499211612), 10000th {int(v[-1])} (want 4123659995)")

    fixture = os.path.join(REPO, "tests", "fixtures", "llada2_tiny")
    cases = []
    cfg_f = st_io.read_config(fixture)
    cases.append(("fixture llada2_tiny", cfg_f, LLaDA2.from_pretrained(fixture, "float32", "cpu"),
                  build_weights(cfg_f, torch.float32, "cpu", model_dir=fixture, log=None)))
    cfg_w = wide_random_cfg()
    ref_t = make_checkpoint.random_tensors(cfg_w, torch.float32, device="cpu", seed=3)
    w_w = build_weights(cfg_w, torch.float32, "cpu", seed=3, log=None)
    # the preset builder's tensors == make_checkpoint's (same per-tensor seeds)
    diff = 0.0
    for name, t in ref_t.items():
        m = EXPERT_RE.fullmatch(name)
        mine = w_w.experts[int(m.group(1))][PROJ[m.group(3)]][int(m.group(2))] if m else w_w.t[name]
        diff = max(diff, float((mine - t).abs().max()))
    report("preset weights == make_checkpoint.random_tensors", diff == 0.0, f"{len(ref_t)} tensors, max |diff| {diff}")
    cases.append(("random wide config (64 experts, top-6)", cfg_w, LLaDA2(cfg_w, ref_t), w_w))

    impls = [("loop", "loop", None), ("grouped (padded_bmm)", "grouped", "padded_bmm"),
             ("grouped (emulated _grouped_mm)", "grouped", "emulated")]
    if hasattr(torch, "_grouped_mm"):
        impls.append(("grouped (torch._grouped_mm)", "grouped", "grouped_mm"))
    else:
        print("  (torch._grouped_mm is not in this torch: the grouped path runs with an emulation of its "
              "2-D x 3-D semantics; the GPU run checks the real op at start-up)")
    B = 16
    for cname, cfg, ref, w in cases:
        model = OfficialLLaDA2(cfg, w)
        g = torch.Generator().manual_seed(11)
        V = model.cfg.vocab_size
        for L, total in ((80, 80), (80, 112)):          # a whole window; a window cropped from a longer mask
            ids = torch.randint(0, V, (1, L), generator=g)
            ids[0, -20:][torch.rand(20, generator=g) < 0.6] = model.mask_token_id
            want = ref(ids, block_length=B)[0].double()
            mask = block_diffusion_mask(total // B, B, "cpu")[:, :, :L, :L]
            pos = torch.arange(L).unsqueeze(0)
            for iname, moe, gi in impls:
                model.moe = moe
                model.grouped_impl = gi or model.grouped_impl
                model.force_unmask = (gi == "padded_bmm")    # the CUDA-only mask step, exercised on one path
                with torch.no_grad():
                    got = model.forward(ids, mask, pos)[0].double()
                d = float((got - want).abs().max())
                report(f"{cname}, L={L} (mask of {total}), {iname}", d <= tol,
                       f"max |logits - llada2.py| {d:.2e} (logits up to {float(want.abs().max()):.1f}), "
                       f"argmax equal {bool((got.argmax(-1) == want.argmax(-1)).all())}")
            model.force_unmask = False

        # generate() against llada2_generate.generate (the reference of the same official loop)
        gens = [dict(P=21, gen_length=24, block_length=8, steps=8, threshold=1.0),    # one token per step
                dict(P=16, gen_length=20, block_length=8, steps=3, threshold=0.95),   # several per step, uneven
                dict(P=40, gen_length=32, block_length=16, steps=16, threshold=0.5)]  # threshold commits
        for gk in gens:
            P = gk.pop("P")
            prompt = mosaic_prompt(model.cfg, P)
            for moe in ("loop", "grouped"):
                model.moe, model.grouped_impl = moe, "padded_bmm"
                mine = official_generate(model, torch.tensor([prompt]), temperature=0.0, **gk)
                theirs = llada2_generate.generate(ref, prompt, temperature=0.0, cache="none", **gk)
                same = mine["x"] == theirs.tokens and mine["answer"] == theirs.answer and mine["nfe"] == theirs.nfe
                report(f"{cname}, generate P={P} {gk} ({moe})", same,
                       f"nfe {mine['nfe']} vs {theirs.nfe}, tokens equal {mine['x'] == theirs.tokens}, "
                       f"answer {mine['answer'][:10]}{'...' if len(mine['answer']) > 10 else ''}")

    # mosaic's own CPU generation on the fixture (the schedule, the prompt, the answer's cut)
    if args.mosaic_bin:
        cfg, model = cases[0][1], OfficialLLaDA2(cases[0][1], cases[0][3])
        model.moe = "loop"
        P, gen, blk = 100, 32, 8    # a partial last prompt block (100 % 8 = 4); no eos in the answer
        prompt = mosaic_prompt(model.cfg, P)
        mine = official_generate(model, torch.tensor([prompt]), temperature=0.0, block_length=blk, steps=blk,
                                 gen_length=gen, threshold=1.0)
        for cache in ("none", "prefix"):
            cmd = [args.mosaic_bin, "generate", "--model", fixture, "--backend", "cpu", "--prompt-tokens",
                   ",".join(map(str, prompt)), "--gen-length", str(gen), "--block-length", str(blk), "--steps",
                   str(blk), "--threshold", "1", "--temperature", "0", "--cache", cache, "--format", "json", "-q"]
            try:
                out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout)
                theirs = out["output_tokens"]
                report(f"mosaic generate --cache {cache} (CPU) vs this generate()", theirs == mine["answer"],
                       f"{sum(a == b for a, b in zip(theirs, mine['answer']))}/{len(mine['answer'])} equal")
            except Exception as e:  # noqa: BLE001
                report(f"mosaic generate --cache {cache}", False, f"{type(e).__name__}: {str(e)[:300]}")
        # mosaic bench --cache's prompt = mosaic_prompt: its first generated tokens must match
        cmd = [args.mosaic_bin, "bench", "--model", fixture, "--backend", "cpu", "--cache", "none,prefix",
               "--tokens", str(P + gen), "--gen-length", str(gen), "--block-length", str(blk), "--warmup-generations",
               "0", "--json", "/tmp/bench_llada2_selfcheck_mosaic.json"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
            res = json.load(open("/tmp/bench_llada2_selfcheck_mosaic.json"))["results"]
            for r in res:
                head, want = r["output_head"], mine["x"][P:P + len(r["output_head"])]
                report(f"mosaic bench --cache {r['cache']} output_head vs this generate() on mosaic's prompt",
                       head == want, f"{head} vs {want}")
        except Exception as e:  # noqa: BLE001
            report("mosaic bench --cache", False, f"{type(e).__name__}: {str(e)[:300]}")
    print(f"self-check: {'all passed' if not fails else str(len(fails)) + ' FAILED: ' + '; '.join(fails)}")
    return 1 if fails else 0


# ============================================================================ CLI
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help="checkpoint directory (config.json + safetensors)")
    src.add_argument("--preset", choices=["llada2-mini"], help="random weights of LLaDA2.0-mini's shape")
    src.add_argument("--config", help="a llada2_moe config.json (random weights)")
    ap.add_argument("--tokens", default="4096,16384,32768", help="comma-separated total lengths L ('' = none)")
    ap.add_argument("--moe", default="loop,grouped", help="loop and/or grouped")
    ap.add_argument("--grouped-impl", default="auto", choices=["auto", "grouped_mm", "padded_bmm", "emulated"])
    ap.add_argument("--gen", type=int, default=None,
                    help="step: masks at the end of the sequence (default: one block, the block being denoised)")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--steps-per-block", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.95, help="step: generate()'s default")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--consistency-tokens", type=int, default=1024,
                    help="CUDA: compare loop and grouped logits at this length first (0 = skip)")
    ap.add_argument("--max-tokens", action="store_true", help="search the largest L whose step runs")
    ap.add_argument("--max-variant", default="auto", choices=["auto", "loop", "grouped"])
    ap.add_argument("--granularity", type=int, default=512)
    ap.add_argument("--max-cap", type=int, default=1 << 20)
    ap.add_argument("--max-seconds", type=float, default=300, help="stop the max search after this long (a lower bound)")
    ap.add_argument("--generate", action="store_true", help="time the official uncached generate()")
    ap.add_argument("--gen-context", type=int, default=4096, help="generate: prompt + gen_length")
    ap.add_argument("--gen-length", type=int, default=256)
    ap.add_argument("--gen-block", type=int, default=32)
    ap.add_argument("--gen-steps", type=int, default=32, help="generate: steps per block")
    ap.add_argument("--gen-threshold", type=float, default=1.0)
    ap.add_argument("--gen-moe", default="loop", help="generate: loop and/or grouped (loop = the official code)")
    ap.add_argument("--gen-warmup-forwards", type=int, default=2)
    ap.add_argument("--dump-prompt", help="write the --generate prompt's ids (comma-separated) here and exit")
    ap.add_argument("--hf-bf16-expert-bias", action="store_true",
                    help="round expert_bias to bf16 as HF from_pretrained(torch_dtype=bf16) does")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench_llada2.json")
    ap.add_argument("--self-check", action="store_true", help="CPU float32 checks against the references")
    ap.add_argument("--check-tol", type=float, default=2e-5)
    ap.add_argument("--mosaic-bin", help="self-check: also compare with this mosaic binary's CPU generation")
    args = ap.parse_args()
    if args.self_check:
        sys.exit(self_check(args))
    if not (args.model or args.preset or args.config):
        ap.error("one of --model, --preset, --config is required")
    if args.dump_prompt:
        c = LLaDA2Config(load_cfg(args))
        ids = mosaic_prompt(c, args.gen_context - args.gen_length)
        with open(args.dump_prompt, "w") as f:
            f.write(",".join(map(str, ids)))
        print(f"wrote {len(ids)} prompt ids to {args.dump_prompt} (eos in prompt: {c.eos_token_id in ids})")
        return
    bench(args)


if __name__ == "__main__":
    main()
