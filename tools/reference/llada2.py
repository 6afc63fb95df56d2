"""LLaDA2.0 MoE (inclusionAI/LLaDA2.0-mini / -flash; model_type "llada2_moe", architecture
"LLaDA2MoeModelLM") forward pass in plain PyTorch.

An independent re-implementation of the HF `modeling_llada2_moe.py` that the official
checkpoints ship (read from the copies in ims-kdks/TIDE model/, ZHZisZZ/dllm
dllm/pipelines/llada2/models/ and inclusionAI/dInfer python/dinfer/model/; no code copied).
Sources for every point: docs/notes/moe_models.md.

    x = word_embeddings[ids]
    per layer i:
        h = input_layernorm(x)                         RMSNorm (float32 statistics, cast back, * weight)
        q, k, v = split(query_key_value(h))            fused [ (H + 2 Hkv) * hd, hidden ], viewed as
                                                       [R, H + 2 Hkv, hd]: heads 0..H-1 = q,
                                                       H..H+Hkv-1 = k, the rest = v
        q, k = query_layernorm(q), key_layernorm(k)    per head RMSNorm over hd (use_qk_norm)
        q, k = partial_rope(q), partial_rope(k)        rotate-half on the first rd = int(hd * partial_rotary_factor)
                                                       dims of each head, the rest passes through
        a = softmax(q k^T / sqrt(hd) + mask) v         mask: 0 / -inf additive (block-causal in generate())
        x = x + dense(a)
        h = post_attention_layernorm(x)
        x = x + (mlp(h) if i < first_k_dense_replace else moe(h))
    logits = lm_head(norm(x))                          (word_embeddings when tie_word_embeddings)

moe(h) = sum_j w_j * expert_{e_j}(h) + shared_experts(h), with the router in float32:
    s = sigmoid(h.float() @ gate.weight.float()^T)         [R, E]
    b = s + expert_bias
    groups: b.view(R, n_group, E / n_group); group score = sum of its top-2; keep the topk_group
            best groups, -inf elsewhere; e = top-k (num_experts_per_tok) of the kept b
    w = s[e] / (sum s[e] + 1e-20) (when k > 1; norm_topk_prob is not read) * routed_scaling_factor
    sum_j in float32 (expert outputs in the model dtype, cast up), cast back to the model dtype
expert / mlp / shared: down(silu(gate(h)) * up(h)); shared width = moe_intermediate_size * num_shared_experts.

Rotary: inv_freq = 1 / theta ** (arange(0, rd, 2) / rd) (float32; rd, not hd, is the denominator),
angles pos * inv_freq in float32, cos / sin of cat(freqs, freqs) (length rd), cast to the model
dtype; rotate_half on the rd dims: (x1, x2) -> (-x2, x1) with x1 = dims [0, rd/2), x2 = [rd/2, rd).
In float64 runs the angles stay the float32 products (what the real model sees), everything
after is float64; the router and the expert sum run in float64 too.

Usage:
    m = LLaDA2.from_pretrained(dir, dtype="float64", device="cpu")
    logits = m(ids, block_length=32)             # [B, L, vocab]; or attention_mask=[L, L] bool
                                                 # (True = may attend) / additive float; neither:
                                                 # bidirectional
    m.routing = []                               # optional: each MoE layer appends a RouterRecord
    m.forward_rows(ids, positions, attend)       # some rows at explicit positions (llada2_generate.py)
    python3 tools/reference/llada2.py DIR --tokens 1,2,3 [--block-length 4] [--dtype float64]
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


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """LLaDA2MoeRMSNorm: statistics in float32 (float64 in float64 runs), the normalised value cast
    back to the input dtype, then weight * it."""
    og = x.dtype
    xf = x.to(torch.float64 if og == torch.float64 else torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    x = xf.to(og)
    return x if weight is None else weight * x


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def block_causal_mask(positions_q: torch.Tensor, positions_k: torch.Tensor, block_length: int) -> torch.Tensor:
    """[Rq, Rk] bool, True where query position may attend key position: block(k) <= block(q),
    block(p) = p // block_length (generate(): tril(ones(nb, nb)) repeat_interleave'd, blocks counted
    from position 0)."""
    bq = torch.div(positions_q, block_length, rounding_mode="floor")
    bk = torch.div(positions_k, block_length, rounding_mode="floor")
    return bk[None, :] <= bq[:, None]


@dataclass
class RouterRecord:
    layer: int
    experts: torch.Tensor      # [R, k] int64, in top-k order (descending biased score)
    weights: torch.Tensor      # [R, k] router dtype (float32 / float64), after normalisation and scaling
    margin: torch.Tensor       # [R] float64: smallest gap of a discrete routing decision (see _route)


class LLaDA2Config:
    def __init__(self, cfg: dict):
        self.raw = cfg
        mt = str(cfg.get("model_type", "")).lower()
        if mt != "llada2_moe":
            raise ValueError(f"model_type '{cfg.get('model_type')}' is not llada2_moe")
        g = cfg.get
        self.hidden_size = int(g("hidden_size"))
        self.num_hidden_layers = int(g("num_hidden_layers"))
        self.num_attention_heads = int(g("num_attention_heads"))
        self.num_key_value_heads = int(g("num_key_value_heads") or self.num_attention_heads)
        self.head_dim = int(g("head_dim") or self.hidden_size // self.num_attention_heads)
        self.intermediate_size = int(g("intermediate_size") or 0)
        self.moe_intermediate_size = int(g("moe_intermediate_size") or 0)
        self.num_experts = g("num_experts")
        self.num_experts = int(self.num_experts) if self.num_experts is not None else None
        nse = g("num_shared_experts")
        self.num_shared_experts = int(nse) if nse else 0
        self.num_experts_per_tok = int(g("num_experts_per_tok", 2))
        self.n_group = int(g("n_group", 8))
        self.topk_group = int(g("topk_group", 4))
        self.routed_scaling_factor = float(g("routed_scaling_factor", 2.5))
        self.first_k_dense_replace = int(g("first_k_dense_replace", 0))
        self.partial_rotary_factor = float(g("partial_rotary_factor", 0.5))
        self.rotary_dim = int(self.head_dim * self.partial_rotary_factor)
        self.rope_theta = float(g("rope_theta", 10000.0))
        self.rms_norm_eps = float(g("rms_norm_eps", 1e-5))
        self.use_qk_norm = bool(g("use_qk_norm", True))         # LLaDA2MoeConfig default True
        self.tie_word_embeddings = bool(g("tie_word_embeddings", False))
        self.vocab_size = int(g("vocab_size"))
        # Not in the official config.json (generate() defaults); the tiny fixture adds them.
        self.mask_token_id = int(g("mask_token_id", 156895))
        self.eos_token_id = int(g("eos_token_id", 156892)) if not isinstance(g("eos_token_id"), list) \
            else int(g("eos_token_id")[0])
        for key, ok, what in (
            ("hidden_act", lambda v: v in (None, "silu"), "only hidden_act silu"),
            ("rope_scaling", lambda v: v is None, "rope_scaling is not supported"),
            ("use_sliding_window", lambda v: not v, "sliding-window attention is not supported"),
            ("score_function", lambda v: v in (None, "sigmoid"), "only the sigmoid router"),
            ("router_dtype", lambda v: v in (None, "fp32"), "only router_dtype fp32"),
            ("norm_head", lambda v: not v, "norm_head is not supported"),
        ):
            if not ok(cfg.get(key)):
                raise ValueError(f"config field {key}={cfg.get(key)!r}: {what}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must divide by num_key_value_heads")
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ValueError(f"rotary dim {self.rotary_dim} must be even and in (0, head_dim]")
        if self.num_experts:
            if self.num_experts % self.n_group or self.num_experts // self.n_group < 2:
                raise ValueError("num_experts must be n_group groups of >= 2 experts")
            if not 0 < self.topk_group <= self.n_group:
                raise ValueError("topk_group must be in [1, n_group]")
            if not 0 < self.num_experts_per_tok <= self.topk_group * (self.num_experts // self.n_group):
                raise ValueError("num_experts_per_tok exceeds the experts of the kept groups")

    def is_moe(self, i: int) -> bool:
        return self.num_experts is not None and i >= self.first_k_dense_replace


def L(i: int, name: str) -> str:
    return f"model.layers.{i}.{name}"


class LLaDA2:
    def __init__(self, config: dict, tensors: Dict[str, torch.Tensor]):
        self.cfg = LLaDA2Config(config)
        self.t = tensors
        c = self.cfg
        w = tensors["model.word_embeddings.weight"]
        self.dtype = w.dtype
        self.device = w.device
        self.rdt = torch.float64 if self.dtype == torch.float64 else torch.float32   # router / softmax
        if tuple(w.shape) != (c.vocab_size, c.hidden_size):
            raise ValueError(f"word_embeddings has shape {tuple(w.shape)}, config wants "
                             f"{(c.vocab_size, c.hidden_size)}")
        need = ["model.norm.weight"] + ([] if c.tie_word_embeddings else ["lm_head.weight"])
        for i in range(c.num_hidden_layers):
            need += [L(i, n) for n in ("input_layernorm.weight", "post_attention_layernorm.weight",
                                       "attention.query_key_value.weight", "attention.dense.weight")]
            if c.use_qk_norm:
                need += [L(i, "attention.query_layernorm.weight"), L(i, "attention.key_layernorm.weight")]
            if c.is_moe(i):
                need.append(L(i, "mlp.gate.weight"))
                for e in range(c.num_experts):
                    need += [L(i, f"mlp.experts.{e}.{p}_proj.weight") for p in ("gate", "up", "down")]
                if c.num_shared_experts:
                    need += [L(i, f"mlp.shared_experts.{p}_proj.weight") for p in ("gate", "up", "down")]
            else:
                need += [L(i, f"mlp.{p}_proj.weight") for p in ("gate", "up", "down")]
        missing = [n for n in need if n not in tensors]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        qkv = tensors[L(0, "attention.query_key_value.weight")]
        want = ((c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim, c.hidden_size)
        if tuple(qkv.shape) != want:
            raise ValueError(f"query_key_value has shape {tuple(qkv.shape)}, config wants {want}")
        # Stacked experts per MoE layer (gathering per row is simplest on tiny models).
        self._experts = {}
        for i in range(c.num_hidden_layers):
            if c.is_moe(i):
                self._experts[i] = tuple(
                    torch.stack([tensors[L(i, f"mlp.experts.{e}.{p}_proj.weight")] for e in range(c.num_experts)])
                    for p in ("gate", "up", "down"))
        self.routing: Optional[List[RouterRecord]] = None   # set to [] to record routing

    @classmethod
    def from_pretrained(cls, model_dir: str, dtype="float32", device="cpu") -> "LLaDA2":
        cfg = st_io.read_config(model_dir)
        return cls(cfg, st_io.load_tensors(model_dir, dtype=dtype, device=device))

    @property
    def mask_token_id(self) -> int:
        return self.cfg.mask_token_id

    @property
    def eos_token_id(self) -> int:
        return self.cfg.eos_token_id

    # ------------------------------------------------------------------ pieces
    def rope_tables(self, positions: torch.Tensor):
        """cos, sin [R, rd] in the model dtype (float32 angles, as LLaDA2MoeRotaryEmbedding)."""
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
        xr, xp = x[..., :rd], x[..., rd:]
        return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)

    def _lin(self, x, name):
        return F.linear(x, self.t[name], self.t.get(name[: -len("weight")] + "bias"))

    def layer_qkv(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer i's post-norm, post-rope q [H, R, hd] and k, v [Hkv, R, hd] of the rows x [R, hidden]."""
        c = self.cfg
        R = x.shape[0]
        h = rms_norm(x, self.t[L(i, "input_layernorm.weight")], c.rms_norm_eps)
        qkv = self._lin(h, L(i, "attention.query_key_value.weight"))
        qkv = qkv.view(R, c.num_attention_heads + 2 * c.num_key_value_heads, c.head_dim)
        q, k, v = qkv.split([c.num_attention_heads, c.num_key_value_heads, c.num_key_value_heads], dim=1)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        if c.use_qk_norm:
            q = rms_norm(q, self.t[L(i, "attention.query_layernorm.weight")], c.rms_norm_eps)
            k = rms_norm(k, self.t[L(i, "attention.key_layernorm.weight")], c.rms_norm_eps)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  allowed: Optional[torch.Tensor]) -> torch.Tensor:
        """q [H, R, hd], k / v [Hkv, N, hd], allowed [R, N] bool or None (all) -> [R, H * hd].
        Explicit attention as eager_attention_forward: scores * hd^-0.5 + mask, softmax in float32
        (float64 in float64 runs), cast back, @ v. GQA: query head h reads kv head h // (H / Hkv)."""
        c = self.cfg
        rep = c.num_attention_heads // c.num_key_value_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
        s = torch.matmul(q, k.transpose(-1, -2)) * (c.head_dim ** -0.5)
        if allowed is not None:
            s = s.masked_fill(~allowed[None], float("-inf"))
        p = torch.softmax(s.to(self.rdt), dim=-1).to(q.dtype)
        a = torch.matmul(p, v)                               # [H, R, hd]
        return a.transpose(0, 1).reshape(q.shape[1], c.num_attention_heads * c.head_dim)

    def _mlp(self, h, prefix):
        g = F.linear(h, self.t[prefix + "gate_proj.weight"])
        u = F.linear(h, self.t[prefix + "up_proj.weight"])
        return F.linear(F.silu(g) * u, self.t[prefix + "down_proj.weight"])

    def _route(self, i: int, h: torch.Tensor):
        """LLaDA2MoeGate.forward + group_limited_topk, plus the margins of its discrete decisions:
        (a) the topk_group-th minus the next group score (when topk_group < n_group); (b) among the
        experts of the kept groups, the k-th minus the (k+1)-th biased score (when more remain)."""
        c = self.cfg
        R = h.shape[0]
        E, G, k = c.num_experts, c.n_group, c.num_experts_per_tok
        logits = F.linear(h.to(self.rdt), self.t[L(i, "mlp.gate.weight")].to(self.rdt))
        scores = torch.sigmoid(logits)
        bias = self.t.get(L(i, "mlp.gate.expert_bias"))
        biased = scores + (bias.to(self.rdt) if bias is not None else 0.0)
        group_scores = biased.view(R, G, E // G).topk(2, dim=-1).values.sum(-1)      # [R, G]
        gs = torch.sort(group_scores, dim=-1, descending=True, stable=True)
        keep_groups = gs.indices[:, : c.topk_group]
        gmask = torch.zeros(R, G, dtype=torch.bool, device=h.device)
        gmask.scatter_(1, keep_groups, True)
        emask = gmask[:, :, None].expand(R, G, E // G).reshape(R, E)
        masked = biased.masked_fill(~emask, float("-inf"))
        es = torch.sort(masked, dim=-1, descending=True, stable=True)
        experts = es.indices[:, :k]
        w = torch.gather(scores, 1, experts)
        if k > 1:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * c.routed_scaling_factor
        margin = torch.full((R,), math.inf, dtype=torch.float64, device=h.device)
        if c.topk_group < G:
            margin = torch.minimum(margin, (gs.values[:, c.topk_group - 1] - gs.values[:, c.topk_group]).double())
        n_allowed = c.topk_group * (E // G)
        if k < n_allowed:
            margin = torch.minimum(margin, (es.values[:, k - 1] - es.values[:, k]).double())
        return experts, w, margin

    def _moe(self, i: int, h: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        experts, w, margin = self._route(i, h)
        if self.routing is not None:
            self.routing.append(RouterRecord(i, experts.clone(), w.clone(), margin))
        Wg, Wu, Wd = self._experts[i]
        R, k = experts.shape
        hk = h[:, None, :].expand(R, k, h.shape[-1])                                # [R, k, d]
        g = torch.einsum("rkd,rkfd->rkf", hk, Wg[experts])
        u = torch.einsum("rkd,rkfd->rkf", hk, Wu[experts])
        y = torch.einsum("rkf,rkdf->rkd", F.silu(g) * u, Wd[experts])                # model dtype
        out = (y.to(w.dtype) * w[..., None]).sum(1).to(h.dtype)
        if c.num_shared_experts:
            out = out + self._mlp(h, L(i, "mlp.shared_experts."))
        return out

    def layer_out(self, i: int, x: torch.Tensor, q, k, v, allowed) -> torch.Tensor:
        """The rest of layer i for the rows x [R, hidden]: attention of their q to k, v (any number of
        keys, kv heads) under `allowed`, dense, residual, then the (MoE) feed-forward."""
        c = self.cfg
        a = self.attention(q, k, v, allowed)
        x = x + self._lin(a, L(i, "attention.dense.weight"))
        h = rms_norm(x, self.t[L(i, "post_attention_layernorm.weight")], c.rms_norm_eps)
        f = self._moe(i, h) if c.is_moe(i) else self._mlp(h, L(i, "mlp."))
        return x + f

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.device)
        if int(ids.max()) >= self.cfg.vocab_size or int(ids.min()) < 0:
            raise ValueError(f"token id outside [0, {self.cfg.vocab_size})")
        return F.embedding(ids, self.t["model.word_embeddings.weight"])

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = rms_norm(x, self.t["model.norm.weight"], self.cfg.rms_norm_eps)
        w = self.t["model.word_embeddings.weight"] if self.cfg.tie_word_embeddings else self.t["lm_head.weight"]
        logits = F.linear(x, w)
        return logits if self.dtype == torch.float64 else logits.float()     # official: logits.float()

    # ------------------------------------------------------------------ entry points
    @torch.no_grad()
    def forward_rows(self, ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        """Logits [R, vocab] of R rows (token ids [R] at absolute positions [R]). Per layer,
        attend(layer, q, k, v) -> (K, V, allowed): q [H, R, hd], k, v [Hkv, R, hd] are the rows' own
        (post-norm, post-rope), K, V [Hkv, N, hd] what they attend to, allowed [R, N] bool or None."""
        c = self.cfg
        positions = torch.as_tensor(positions, device=self.device)
        cos, sin = self.rope_tables(positions)
        x = self.embed(torch.as_tensor(ids).reshape(-1))
        for i in range(c.num_hidden_layers):
            q, k, v = self.layer_qkv(i, x, cos, sin)
            K, V, allowed = attend(i, q, k, v)
            x = self.layer_out(i, x, q, K, V, allowed)
        return self.head(x)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 block_length: Optional[int] = None) -> torch.Tensor:
        """input_ids [B, L] or [L] -> logits [B, L, vocab] (float32, float64 in float64 runs).
        attention_mask: [L, L] (or [B, 1, L, L]) bool (True = attend) or additive float (0 / -inf, as
        generate() builds it); block_length: block-causal mask with blocks from position 0; neither:
        bidirectional."""
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        B, Ln = input_ids.shape
        pos = torch.arange(Ln, device=self.device)
        allowed = None
        if attention_mask is not None and block_length is not None:
            raise ValueError("give attention_mask or block_length, not both")
        if block_length is not None:
            allowed = block_causal_mask(pos, pos, int(block_length))
        elif attention_mask is not None:
            m = attention_mask.to(self.device)
            while m.dim() > 2:
                if m.shape[0] != 1:
                    raise ValueError("attention_mask: batch size 1 only")
                m = m[0]
            allowed = m if m.dtype == torch.bool else (m == 0)
        out = []
        for b in range(B):
            out.append(self.forward_rows(input_ids[b], pos, lambda i, q, k, v: (k, v, allowed)))
        return torch.stack(out)


def main():
    ap = argparse.ArgumentParser(description="LLaDA2 MoE reference forward: prints argmax per position")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--block-length", type=int, default=None, help="block-causal mask (default: bidirectional)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    m = LLaDA2.from_pretrained(a.model_dir, a.dtype, a.device)
    m.routing = []
    ids = torch.tensor([[int(t) for t in a.tokens.split(",")]])
    logits = m(ids, block_length=a.block_length)[0].to(torch.float64)
    print("argmax:", logits.argmax(-1).tolist())
    print("max:", [round(v, 5) for v in logits.max(-1).values.tolist()])
    for r in m.routing:
        print(f"layer {r.layer} experts:", r.experts.tolist(), "min margin %.3e" % float(r.margin.min()))


if __name__ == "__main__":
    main()
