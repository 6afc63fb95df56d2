"""LLaDA-MoE (inclusionAI/LLaDA-MoE-7B-A1B-Base / -Instruct; config.json model_type "llada", like
LLaDA-8B, architecture "LLaDAMoEModelLM") forward pass in plain PyTorch.

An independent re-implementation of the HF `modeling_lladamoe.py` (OLMoE turned into a bidirectional
diffusion model), read from the copies in ZHZisZZ/dllm (dllm/pipelines/llada/models/) and
inclusionAI/dInfer (tools/modeling_fused_lladamoe.py); no code copied. Sources for every point:
docs/notes/moe_models.md ("LLaDA-MoE-7B-A1B").

    x = embed_tokens[ids]
    per layer i:
        h = input_layernorm(x)                         RMSNorm (float32 statistics, cast back, weight * it)
        q, k, v = q_proj(h), k_proj(h), v_proj(h)      separate projections (biases iff attention_bias)
        q, k = q_norm(q), k_norm(k)                    qk_layernorm: RMSNorm over head_dim per head
                                                       (weight [head_dim]); before clip_qkv and rope
        q, k, v = clamp(., +-clip_qkv)                 only when clip_qkv is set
        q, k = rope(q), rope(k)                        rotate-half on the first rd = int(hd * partial_rotary_factor)
                                                       dims (all of them for the 7B), the rest passes
        a = softmax(q k^T / sqrt(hd)) v                fully bidirectional, no mask; softmax in float32
        x = x + o_proj(a)
        h = post_attention_layernorm(x)
        x = x + (moe(h) [+ shared_expert(h)] if moe_layer_freq[i] else mlp(h))
    logits = lm_head(norm(x))                          (embed_tokens when tie_word_embeddings); model dtype,
                                                       no float cast; no shift (row i predicts token i)

moe(h) (LLaDAMoESparseMoeBlock), per row:
    p = softmax(gate(h))                               gate in the model dtype, softmax in float32, over all E
    p = p + expert_bias                                only when moe_router_enable_expert_bias
    e_1..e_k = top-k(p) (num_experts_per_tok)          the weights are the selected p themselves: NOT
    w_j = p[e_j]                                       renormalised (norm_topk_prob is hard-coded False and
                                                       the config value is ignored), routed_scaling_factor
                                                       is not applied; then cast to the model dtype
    out = sum_j w_j * expert_{e_j}(h)                  accumulated in the model dtype in ascending expert id
                                                       order (the official loop over experts with index_add_)
expert / mlp / shared_expert: down(silu(gate(h)) * up(h)) of width expert_intermediate_size /
dense_intermediate_size / shared_expert_intermediate_size.

Rotary: inv_freq = 1 / theta ** (arange(0, rd, 2) / rd) in float32, angles pos * inv_freq in float32,
cos / sin of cat(freqs, freqs) (length rd) computed in float32 and cast to the model dtype (bf16 for the
released model: unlike LLaDA-8B, the rotation itself runs in the model dtype). In float64 runs the
angles stay the float32 products (what the real model sees); cos / sin and everything after are float64,
the router and attention softmax too.

Usage:
    m = LLaDAMoE.from_pretrained(dir, dtype="float64", device="cpu")
    logits = m(ids)                              # ids [L] -> [L, vocab]; ids [B, L] -> [B, L, vocab]
    m.routing = []                               # optional: each MoE layer of each forward appends a RouterRecord
    m.forward_rows(ids, positions, attend)       # some rows at explicit positions, attending to keys/values
                                                 # chosen per layer (for cached decoding)
    generate.generate(m, prompt, ...)            # LLaDA-8B's official sampler runs on it unchanged
    python3 tools/reference/llada_moe.py DIR --tokens 1,2,3 [--dtype float64]
    python3 tools/reference/llada_moe.py DIR --tokens 1,2,3 --gen-length 16 --steps 16 --block-length 16 \\
        [--temperature 0] [--cfg-scale 0] [--remasking low_confidence] [--seed 0] [--dtype float64]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

ARCHITECTURES = ("LLaDAMoEModelLM", "LLaDAMoEModel")


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """LLaDAMoERMSNorm (OLMoE's): statistics in float32 (float64 in float64 runs), the normalised value cast
    back to the input dtype, then weight * it."""
    og = x.dtype
    xf = x.to(torch.float64 if og == torch.float64 else torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    x = xf.to(og)
    return x if weight is None else weight * x


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def is_llada_moe(cfg: dict) -> bool:
    """LLaDA-MoE's config.json says model_type "llada" like LLaDA-8B: tell them apart by the architecture
    (or, failing that, by the MoE fields LLaDA-8B lacks)."""
    archs = cfg.get("architectures") or []
    if any(a in ARCHITECTURES for a in archs):
        return True
    return "num_experts" in cfg and "expert_intermediate_size" in cfg and "d_model" not in cfg


@dataclass
class RouterRecord:
    layer: int
    experts: torch.Tensor      # [R, k] int64, top-k order (descending score, ties -> lower expert id)
    weights: torch.Tensor      # [R, k] router dtype (float32 / float64): the selected (biased) probabilities
    margin: torch.Tensor       # [R] float64: k-th minus (k+1)-th score (inf when k == num_experts)


class LLaDAMoEConfig:
    def __init__(self, cfg: dict):
        self.raw = cfg
        if str(cfg.get("model_type", "llada")).lower() not in ("llada", "lladamoe"):
            raise ValueError(f"model_type '{cfg.get('model_type')}' is neither llada nor lladamoe")
        if not is_llada_moe(cfg):
            raise ValueError(f"architectures {cfg.get('architectures')} is not LLaDAMoEModelLM "
                             "(a LLaDA-8B config? use llada.py)")
        g = cfg.get
        self.hidden_size = int(g("hidden_size"))
        self.num_hidden_layers = int(g("num_hidden_layers"))
        self.num_attention_heads = int(g("num_attention_heads"))
        self.num_key_value_heads = int(g("num_key_value_heads") or self.num_attention_heads)
        self.head_dim = self.hidden_size // self.num_attention_heads          # no head_dim field upstream
        if g("head_dim") is not None and int(g("head_dim")) != self.head_dim:
            raise ValueError(f"head_dim {g('head_dim')} != hidden_size / num_attention_heads "
                             f"({self.head_dim}): the official attention ignores head_dim")
        self.dense_intermediate_size = int(g("dense_intermediate_size") or 0)
        self.expert_intermediate_size = int(g("expert_intermediate_size") or 0)
        sei = g("shared_expert_intermediate_size")
        self.shared_expert_intermediate_size = int(sei) if sei is not None else None
        self.num_experts = int(g("num_experts"))
        self.num_experts_per_tok = int(g("num_experts_per_tok"))
        freq = g("moe_layer_freq")
        if not isinstance(freq, list) or len(freq) < self.num_hidden_layers:
            raise ValueError(f"moe_layer_freq must be a list with one 0 (dense) / 1 (MoE) per layer, got {freq!r}")
        self.moe_layer_freq = [int(v) for v in freq[: self.num_hidden_layers]]
        self.qk_layernorm = bool(g("qk_layernorm"))
        self.enable_expert_bias = bool(g("moe_router_enable_expert_bias"))
        self.norm_topk_prob_config = g("norm_topk_prob")       # read for reporting only: never applied
        self.attention_bias = bool(g("attention_bias", False))
        clip = g("clip_qkv")
        self.clip_qkv = float(clip) if clip is not None else None
        self.rope_theta = float(g("rope_theta", -1))
        prf = g("partial_rotary_factor")
        if prf is None or not 0 < float(prf) <= 1:
            raise ValueError(f"partial_rotary_factor {prf!r} must be in (0, 1] (LLaDAMoEConfig's default -1 "
                             "gives a negative rotary dim upstream)")
        self.partial_rotary_factor = float(prf)
        self.rotary_dim = int(self.head_dim * self.partial_rotary_factor)
        self.rms_norm_eps = float(g("rms_norm_eps", 1e-5))
        self.tie_word_embeddings = bool(g("tie_word_embeddings", False))
        self.vocab_size = int(g("vocab_size"))
        # Not LLaDAMoEConfig fields (the sampler's defaults upstream: mask_id=156895); the tiny fixture adds them.
        self.mask_token_id = int(g("mask_token_id", 156895))
        eos = g("eos_token_id", 156892)
        self.eos_token_id = int(eos[0] if isinstance(eos, list) else eos)
        for key, ok, what in (
            ("hidden_act", lambda v: v in (None, "silu"), "only hidden_act silu"),
            ("rope_scaling", lambda v: v is None, "rope_scaling is not supported"),
        ):
            if not ok(cfg.get(key)):
                raise ValueError(f"config field {key}={cfg.get(key)!r}: {what}")
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta {self.rope_theta} must be positive")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must divide by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must divide by num_key_value_heads")
        if self.rotary_dim % 2 or self.rotary_dim <= 0:
            raise ValueError(f"rotary dim {self.rotary_dim} must be even and positive")
        if any(self.moe_layer_freq) and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"num_experts_per_tok {self.num_experts_per_tok} must be in [1, num_experts "
                             f"{self.num_experts}]")

    def is_moe(self, i: int) -> bool:
        return self.moe_layer_freq[i] != 0


def L(i: int, name: str) -> str:
    return f"model.layers.{i}.{name}"


class LLaDAMoE:
    def __init__(self, config: dict, tensors: Dict[str, torch.Tensor]):
        self.cfg = LLaDAMoEConfig(config)
        self.t = tensors
        c = self.cfg
        w = tensors["model.embed_tokens.weight"]
        self.dtype = w.dtype
        self.device = w.device
        self.rdt = torch.float64 if self.dtype == torch.float64 else torch.float32   # router / softmax
        if tuple(w.shape) != (c.vocab_size, c.hidden_size):
            raise ValueError(f"embed_tokens has shape {tuple(w.shape)}, config wants {(c.vocab_size, c.hidden_size)}")
        need = ["model.norm.weight"] + ([] if c.tie_word_embeddings else ["lm_head.weight"])
        for i in range(c.num_hidden_layers):
            need += [L(i, n) for n in ("input_layernorm.weight", "post_attention_layernorm.weight")]
            need += [L(i, f"self_attn.{p}_proj.weight") for p in ("q", "k", "v", "o")]
            if c.qk_layernorm:
                need += [L(i, "self_attn.q_norm.weight"), L(i, "self_attn.k_norm.weight")]
            if c.is_moe(i):
                need.append(L(i, "mlp.gate.weight"))
                for e in range(c.num_experts):
                    need += [L(i, f"mlp.experts.{e}.{p}_proj.weight") for p in ("gate", "up", "down")]
                if c.shared_expert_intermediate_size is not None:
                    need += [L(i, f"shared_expert.{p}_proj.weight") for p in ("gate", "up", "down")]
            else:
                need += [L(i, f"mlp.{p}_proj.weight") for p in ("gate", "up", "down")]
        missing = [n for n in need if n not in tensors]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        hd, H, Hkv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
        shapes = {L(0, "self_attn.q_proj.weight"): (H * hd, c.hidden_size),
                  L(0, "self_attn.k_proj.weight"): (Hkv * hd, c.hidden_size),
                  L(0, "self_attn.o_proj.weight"): (c.hidden_size, H * hd)}
        if c.qk_layernorm:
            shapes[L(0, "self_attn.q_norm.weight")] = (hd,)
        for n, s in shapes.items():
            if tuple(tensors[n].shape) != s:
                raise ValueError(f"{n} has shape {tuple(tensors[n].shape)}, config wants {s}")
        self.routing: Optional[List[RouterRecord]] = None   # set to [] to record routing

    @classmethod
    def from_pretrained(cls, model_dir: str, dtype="float32", device="cpu") -> "LLaDAMoE":
        cfg = st_io.read_config(model_dir)
        return cls(cfg, st_io.load_tensors(model_dir, dtype=dtype, device=device))

    @property
    def mask_token_id(self) -> int:
        return self.cfg.mask_token_id

    @property
    def eos_token_id(self) -> int:
        return self.cfg.eos_token_id

    # ------------------------------------------------------------------ pieces
    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.t[name], self.t.get(name[: -len("weight")] + "bias"))

    def rope_tables(self, positions: torch.Tensor):
        """cos, sin [R, rd] in the model dtype (float32 angles and cos / sin, as LLaDAMoERotaryEmbedding)."""
        c = self.cfg
        rd = c.rotary_dim
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.int64, device=self.device)
                                           .to(torch.float32) / rd))
        freqs = torch.outer(positions.to(self.device).to(torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        if self.dtype == torch.float64:
            emb = emb.to(torch.float64)
            return emb.cos(), emb.sin()
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rd = cos.shape[-1]
        if rd == x.shape[-1]:
            return x * cos + rotate_half(x) * sin
        xr, xp = x[..., :rd], x[..., rd:]
        return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)

    def layer_qkv(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer i's post-norm, post-rope q [H, R, hd] and k, v [Hkv, R, hd] of the rows x [R, hidden]."""
        c = self.cfg
        R = x.shape[0]
        h = rms_norm(x, self.t[L(i, "input_layernorm.weight")], c.rms_norm_eps)
        q = self._lin(h, L(i, "self_attn.q_proj.weight")).view(R, c.num_attention_heads, c.head_dim)
        k = self._lin(h, L(i, "self_attn.k_proj.weight")).view(R, c.num_key_value_heads, c.head_dim)
        if c.qk_layernorm:
            q = rms_norm(q, self.t[L(i, "self_attn.q_norm.weight")], c.rms_norm_eps)
            k = rms_norm(k, self.t[L(i, "self_attn.k_norm.weight")], c.rms_norm_eps)
        v = self._lin(h, L(i, "self_attn.v_proj.weight")).view(R, c.num_key_value_heads, c.head_dim)
        if c.clip_qkv is not None:
            q, k, v = (t.clamp(-c.clip_qkv, c.clip_qkv) for t in (q, k, v))
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [H, R, hd], k / v [Hkv, N, hd] -> [R, H * hd]. Explicit attention as the eager LLaDAMoEAttention:
        (q k^T) / sqrt(hd), softmax in float32 (float64 in float64 runs), cast back, @ v. No mask. GQA: query
        head h reads kv head h // (H / Hkv) (repeat_kv)."""
        c = self.cfg
        rep = c.num_attention_heads // c.num_key_value_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        p = torch.softmax(s.to(self.rdt), dim=-1).to(q.dtype)
        a = torch.matmul(p, v)                               # [H, R, hd]
        return a.transpose(0, 1).reshape(q.shape[1], c.num_attention_heads * c.head_dim)

    def _mlp(self, h: torch.Tensor, prefix: str) -> torch.Tensor:
        g = F.linear(h, self.t[prefix + "gate_proj.weight"])
        u = F.linear(h, self.t[prefix + "up_proj.weight"])
        return F.linear(F.silu(g) * u, self.t[prefix + "down_proj.weight"])

    def route(self, i: int, h: torch.Tensor):
        """LLaDAMoESparseMoeBlock's router: experts [R, k] (top-k order), weights [R, k] (router dtype) and the
        margin [R] of the selection (k-th minus (k+1)-th score)."""
        c = self.cfg
        k = c.num_experts_per_tok
        logits = F.linear(h, self.t[L(i, "mlp.gate.weight")])                # model dtype, as nn.Linear
        scores = torch.softmax(logits.to(self.rdt), dim=-1)                   # F.softmax(..., dtype=float)
        if c.enable_expert_bias:
            b = self.t.get(L(i, "mlp.expert_bias"))      # a zero buffer upstream when the checkpoint lacks it
            if b is not None:
                scores = scores + b.to(self.rdt)
        srt = torch.sort(scores, dim=-1, descending=True, stable=True)
        experts = srt.indices[:, :k]
        weights = srt.values[:, :k]
        margin = torch.full((h.shape[0],), math.inf, dtype=torch.float64, device=h.device)
        if k < c.num_experts:
            margin = (srt.values[:, k - 1] - srt.values[:, k]).to(torch.float64)
        return experts, weights, margin

    def moe(self, i: int, h: torch.Tensor) -> torch.Tensor:
        experts, weights, margin = self.route(i, h)
        if self.routing is not None:
            self.routing.append(RouterRecord(i, experts.clone(), weights.clone(), margin))
        w = weights.to(h.dtype)                                               # cast back to the model dtype
        out = torch.zeros_like(h)
        # As the official loop: experts in ascending id, each over the rows that picked it, scaled by the
        # row's weight and index_add_'ed in the model dtype.
        for e in torch.unique(experts).tolist():
            rows, slot = torch.where(experts == e)
            y = self._mlp(h[rows], L(i, f"mlp.experts.{e}.")) * w[rows, slot, None]
            out.index_add_(0, rows, y)
        return out

    def layer_out(self, i: int, x: torch.Tensor, q, k, v) -> torch.Tensor:
        """The rest of layer i for the rows x [R, hidden]: attention of their q to k, v (any number of keys, kv
        heads), o_proj, residual, then the (MoE) feed-forward."""
        c = self.cfg
        a = self.attention(q, k, v)
        x = x + self._lin(a, L(i, "self_attn.o_proj.weight"))
        h = rms_norm(x, self.t[L(i, "post_attention_layernorm.weight")], c.rms_norm_eps)
        if c.is_moe(i):
            f = self.moe(i, h)
            if c.shared_expert_intermediate_size is not None:
                f = f + self._mlp(h, L(i, "shared_expert."))
        else:
            f = self._mlp(h, L(i, "mlp."))
        return x + f

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.device)
        if int(ids.max()) >= self.cfg.vocab_size or int(ids.min()) < 0:
            raise ValueError(f"token id outside [0, {self.cfg.vocab_size})")
        return F.embedding(ids, self.t["model.embed_tokens.weight"])

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = rms_norm(x, self.t["model.norm.weight"], self.cfg.rms_norm_eps)
        w = self.t["model.embed_tokens.weight"] if self.cfg.tie_word_embeddings else self.t["lm_head.weight"]
        return F.linear(x, w)                                # model dtype (no .float() upstream)

    # ------------------------------------------------------------------ entry points
    @torch.no_grad()
    def forward_rows(self, ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        """Logits [R, vocab] of R rows (token ids [R] at absolute positions [R]). Per layer,
        attend(layer, q, k, v) -> (K, V): q [H, R, hd], k, v [Hkv, R, hd] are the rows' own (post-norm,
        post-rope), K, V [Hkv, N, hd] what they attend to (return (k, v) for a plain forward)."""
        c = self.cfg
        positions = torch.as_tensor(positions, device=self.device)
        cos, sin = self.rope_tables(positions)
        x = self.embed(torch.as_tensor(ids).reshape(-1))
        for i in range(c.num_hidden_layers):
            q, k, v = self.layer_qkv(i, x, cos, sin)
            K, V = attend(i, q, k, v)
            x = self.layer_out(i, x, q, K, V)
        return self.head(x)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [L] -> logits [L, vocab]; [B, L] -> [B, L, vocab] (each sequence on its own, bidirectional,
        positions 0..L-1). Logits in the model dtype."""
        ids = torch.as_tensor(input_ids)
        if ids.dim() == 1:
            return self.forward_rows(ids, torch.arange(ids.shape[0]), lambda i, q, k, v: (k, v))
        pos = torch.arange(ids.shape[1])
        return torch.stack([self.forward_rows(ids[b], pos, lambda i, q, k, v: (k, v)) for b in range(ids.shape[0])])


def main():
    ap = argparse.ArgumentParser(description="LLaDA-MoE reference forward (argmax per position and routing), or "
                                             "with --gen-length LLaDA's generate() (tools/reference/generate.py)")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids (the prompt with --gen-length)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gen-length", type=int, default=0, help="> 0: run generate() on --tokens as the prompt")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--block-length", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--cfg-scale", type=float, default=0.0)
    ap.add_argument("--remasking", default="low_confidence")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    m = LLaDAMoE.from_pretrained(a.model_dir, a.dtype, a.device)
    m.routing = []
    ids = [int(t) for t in a.tokens.split(",") if t.strip()]
    if a.gen_length > 0:
        from generate import generate

        r = generate(m, ids, a.steps, a.gen_length, a.block_length, a.temperature, a.cfg_scale, a.remasking,
                     seed=a.seed)
        print("tokens:", r.tokens)
        print("min_margin: %.3e" % r.min_margin)
        print("min_router_margin: %.3e" % min(float(x.margin.min()) for x in m.routing))
        return
    logits = m(torch.tensor(ids)).to(torch.float64)
    print("argmax:", logits.argmax(-1).tolist())
    print("max:", [round(v, 5) for v in logits.max(-1).values.tolist()])
    for r in m.routing:
        print(f"layer {r.layer} experts:", r.experts.tolist(), "min margin %.3e" % float(r.margin.min()))


if __name__ == "__main__":
    main()
