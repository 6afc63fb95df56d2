"""LLaDA-8B (GSAI-ML/LLaDA-8B-Base / -Instruct) forward pass in plain PyTorch.

An independent re-implementation of the HF `modeling_llada.py` path that the
official checkpoints use (block_type "llama", layer_norm_type "rms",
activation_type "silu", rope with rope_full_precision, no ALiBi, no QK-norm,
no scale_logits, no input_emb_norm):

    x = wte[ids]
    per block:  h = attn_norm(x)                      RMSNorm: x.float(), mean(x^2), rsqrt(var+eps),
                                                      cast back to the model dtype, then * weight
                q, k, v = q_proj(h), k_proj(h), v_proj(h)   (or att_proj(h) split d | kv*hd | kv*hd)
                q, k = rope(q), rope(k)                computed in float32 (rope_full_precision)
                a = softmax(q k^T / sqrt(hd)) v        bidirectional (no mask), GQA: query head h
                                                      reads kv head h // (n_heads / n_kv_heads)
                x = x + attn_out(a)
                h = ff_norm(x)
                x = x + ff_out(silu(ff_proj(h)) * up_proj(h))
    logits = ln_f(x) @ transformer.ff_out^T          (wte^T when weight_tying)

Logits have embedding_size columns (>= vocab_size; the padding columns are real
rows of the LM head and take part in softmax/argmax, as in the official code).

Rotary details as the official RotaryEmbedding: inv_freq = 1 / theta**(arange(0,hd,2)/hd)
and the angles pos * inv_freq are formed in float32; sin/cos of cat(freqs, freqs);
rotate_half swaps the two halves (x1, x2) -> (-x2, x1). With dtype=float64 the angles
are still the float32 ones (they are what the real model sees) but sin/cos and
everything after are float64.

Usage:
    m = LLaDA.from_pretrained(dir, dtype="float64", device="cpu")
    logits = m(torch.tensor([[...token ids...]]))      # [B, L, embedding_size]
    m.forward_rows(ids, positions, attend)             # some rows at explicit positions, attending to
                                                       # keys/values chosen per layer (cached_generate.py)
    python3 tools/reference/llada.py DIR --tokens 1,2,3 [--dtype float64]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Dict, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


# ----------------------------------------------------------------------------- shared pieces
def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float,
             bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RMSNorm as LLaDA's RMSLayerNorm and Qwen2/Dream's RMSNorm: statistics in (at least)
    float32, the normalised value cast back to the input dtype, then * weight (+ bias)."""
    og = x.dtype
    xf = x.to(torch.float64 if og == torch.float64 else torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    x = xf.to(og)
    if weight is not None:
        x = weight * x
    if bias is not None:
        x = x + bias
    return x


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """[L, head_dim] float32 angles, cat(freqs, freqs), as torch forms them in both models."""
    dev = positions.device
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=dev, dtype=torch.float32) / head_dim))
    freqs = torch.outer(positions.to(torch.float32), inv_freq)
    return torch.cat((freqs, freqs), dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bidirectional attention, q/k/v [B, H, L, hd] (k/v already expanded to H heads)."""
    if HAS_SDPA and q.dtype != torch.float64:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    p = torch.softmax(s.to(torch.float64 if q.dtype == torch.float64 else torch.float32), dim=-1).to(q.dtype)
    del s
    return torch.matmul(p, v)


def linear(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor] = None) -> torch.Tensor:
    return F.linear(x, w, b)


# ----------------------------------------------------------------------------- config
class LLaDAConfig:
    def __init__(self, cfg: dict):
        self.raw = cfg
        mt = str(cfg.get("model_type", "llada")).lower()
        if mt != "llada":
            raise ValueError(f"model_type '{cfg.get('model_type')}' is not LLaDA")
        self.d_model = int(cfg["d_model"])
        self.n_layers = int(cfg["n_layers"])
        self.n_heads = int(cfg["n_heads"])
        self.n_kv_heads = int(cfg.get("n_kv_heads") or self.n_heads)
        if cfg.get("multi_query_attention"):
            self.n_kv_heads = 1
        mlp = cfg.get("mlp_hidden_size")
        self.mlp_hidden_size = int(mlp) if mlp is not None else int(cfg.get("mlp_ratio", 4)) * self.d_model
        self.vocab_size = int(cfg["vocab_size"])
        self.embedding_size = int(cfg.get("embedding_size") or self.vocab_size)
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.rms_norm_eps = float(cfg.get("rms_norm_eps", 1e-5))
        self.mask_token_id = int(cfg.get("mask_token_id", 126336))
        self.weight_tying = bool(cfg.get("weight_tying", False))
        self.include_bias = bool(cfg.get("include_bias", False))
        self.include_qkv_bias = bool(cfg.get("include_qkv_bias", False)) or self.include_bias
        blfn = cfg.get("bias_for_layer_norm")
        self.norm_bias = self.include_bias if blfn is None else bool(blfn)
        self.head_dim = self.d_model // self.n_heads
        for key, ok, what in (
            ("block_type", lambda v: v in (None, "llama"), "only block_type 'llama' (LLaDA-8B)"),
            ("layer_norm_type", lambda v: v in (None, "rms"), "only layer_norm_type 'rms'"),
            ("activation_type", lambda v: v in (None, "silu"), "only activation_type 'silu' with up_proj"),
            ("alibi", lambda v: not v, "alibi is not supported"),
            ("rope", lambda v: v in (None, True), "rope: false is not supported"),
            ("attention_layer_norm", lambda v: not v, "QK layer norm is not supported"),
            ("scale_logits", lambda v: not v, "scale_logits is not supported"),
            ("input_emb_norm", lambda v: not v, "input_emb_norm is not supported"),
            ("clip_qkv", lambda v: v is None, "clip_qkv is not supported"),
        ):
            if not ok(cfg.get(key)):
                raise ValueError(f"config field {key}={cfg.get(key)!r}: {what}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError("d_model must divide by n_heads and n_heads by n_kv_heads")


def P(i: int, name: str) -> str:
    return f"model.transformer.blocks.{i}.{name}"


# ----------------------------------------------------------------------------- model
class LLaDA:
    def __init__(self, config: dict, tensors: Dict[str, torch.Tensor]):
        self.cfg = LLaDAConfig(config)
        self.t = tensors
        c = self.cfg
        w = tensors["model.transformer.wte.weight"]
        self.dtype = w.dtype
        self.device = w.device
        if tuple(w.shape) != (c.embedding_size, c.d_model):
            raise ValueError(f"wte.weight has shape {tuple(w.shape)}, config wants {(c.embedding_size, c.d_model)}")
        self.fused = P(0, "att_proj.weight") in tensors
        need = ["model.transformer.ln_f.weight"]
        if not c.weight_tying:
            need.append("model.transformer.ff_out.weight")
        for i in range(c.n_layers):
            need += [P(i, n + ".weight") for n in ("attn_norm", "ff_norm", "attn_out", "ff_proj", "up_proj", "ff_out")]
            need += [P(i, "att_proj.weight")] if self.fused else [P(i, n + ".weight") for n in ("q_proj", "k_proj", "v_proj")]
        missing = [n for n in need if n not in tensors]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        if self.device.type == "cuda":
            # As the official LLaDAModel.__init__: flash SDPA on, memory-efficient SDPA off.
            try:
                torch.backends.cuda.enable_flash_sdp(True)
                torch.backends.cuda.enable_mem_efficient_sdp(False)
            except AttributeError:
                pass

    @classmethod
    def from_pretrained(cls, model_dir: str, dtype="float32", device="cpu") -> "LLaDA":
        cfg = st_io.read_config(model_dir)
        return cls(cfg, st_io.load_tensors(model_dir, dtype=dtype, device=device))

    @property
    def mask_token_id(self) -> int:
        return self.cfg.mask_token_id

    def _b(self, name: str) -> Optional[torch.Tensor]:
        return self.t.get(name)

    def _qkv(self, i: int, h: torch.Tensor):
        c = self.cfg
        if self.fused:
            w = self.t[P(i, "att_proj.weight")]
            qkv = linear(h, w, self._b(P(i, "att_proj.bias")))
            kvd = c.n_kv_heads * c.head_dim
            return qkv.split((c.d_model, kvd, kvd), dim=-1)
        q = linear(h, self.t[P(i, "q_proj.weight")], self._b(P(i, "q_proj.bias")))
        k = linear(h, self.t[P(i, "k_proj.weight")], self._b(P(i, "k_proj.bias")))
        v = linear(h, self.t[P(i, "v_proj.weight")], self._b(P(i, "v_proj.bias")))
        return q, k, v

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # rope_full_precision: rotate in float32 (float64 in a float64 run), cast back.
        xf = x.to(cos.dtype)
        return ((xf * cos) + (rotate_half(xf) * sin)).to(x.dtype)

    def layer_qkv(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer i's post-rope q [B, H, R, hd] and k, v [B, Hkv, R, hd] of the rows in x [B, R, d]
        (cos/sin: the rows' rope tables, see rope_tables)."""
        c = self.cfg
        B, L, _ = x.shape
        h = rms_norm(x, self.t[P(i, "attn_norm.weight")], c.rms_norm_eps, self._b(P(i, "attn_norm.bias")))
        q, k, v = self._qkv(i, h)
        del h
        q = q.reshape(B, L, c.n_heads, c.head_dim).transpose(1, 2)
        k = k.reshape(B, L, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = v.reshape(B, L, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q = self._rope(q, cos, sin)
        k = self._rope(k, cos, sin)
        return q, k, v

    def layer_out(self, i: int, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The rest of layer i: the rows' queries q attend to the keys/values k, v (any number of
        them, kv heads), then attn_out, residual, feed-forward."""
        c = self.cfg
        B, L, _ = x.shape
        rep = c.n_heads // c.n_kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        a = attention(q, k, v)
        del q, k, v
        a = a.transpose(1, 2).reshape(B, L, c.d_model)
        x = x + linear(a, self.t[P(i, "attn_out.weight")], self._b(P(i, "attn_out.bias")))
        del a
        h = rms_norm(x, self.t[P(i, "ff_norm.weight")], c.rms_norm_eps, self._b(P(i, "ff_norm.bias")))
        g = linear(h, self.t[P(i, "ff_proj.weight")], self._b(P(i, "ff_proj.bias")))
        u = linear(h, self.t[P(i, "up_proj.weight")], self._b(P(i, "up_proj.bias")))
        del h
        g = F.silu(g)
        g = g * u
        del u
        return x + linear(g, self.t[P(i, "ff_out.weight")], self._b(P(i, "ff_out.bias")))

    def block(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.layer_qkv(i, x, cos, sin)
        return self.layer_out(i, x, q, k, v)

    def rope_tables(self, positions: torch.Tensor):
        """cos, sin [1, 1, R, hd] for the given absolute positions (float32 angles; float64 in a
        float64 run, else float32, as rope_full_precision)."""
        c = self.cfg
        ang = rope_angles(positions.to(self.device), c.head_dim, c.rope_theta)
        rdt = torch.float64 if self.dtype == torch.float64 else torch.float32
        ang = ang.to(rdt)
        return ang.cos()[None, None], ang.sin()[None, None]

    def _check_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        input_ids = input_ids.to(self.device)
        if int(input_ids.max()) >= self.cfg.embedding_size or int(input_ids.min()) < 0:
            raise ValueError(f"token id outside [0, {self.cfg.embedding_size})")
        return input_ids

    @torch.no_grad()
    def forward_rows(self, ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        """Logits [R, embedding_size] of R rows (token ids [R] at absolute positions [R]) whose
        queries attend to keys/values chosen per layer by attend(layer, q, k, v) -> (K, V):
        q [1, H, R, hd], k, v [1, Hkv, R, hd] are the rows' own (post-rope), K, V [1, Hkv, N, hd]
        what they attend to (return (k, v) for a plain forward over the rows alone)."""
        c = self.cfg
        ids = self._check_ids(ids.reshape(1, -1))
        cos, sin = self.rope_tables(torch.as_tensor(positions))
        x = F.embedding(ids, self.t["model.transformer.wte.weight"])
        for i in range(c.n_layers):
            q, k, v = self.layer_qkv(i, x, cos, sin)
            ka, va = attend(i, q, k, v)
            x = self.layer_out(i, x, q, ka, va)
            del q, k, v, ka, va
        x = rms_norm(x, self.t["model.transformer.ln_f.weight"], c.rms_norm_eps,
                     self._b("model.transformer.ln_f.bias"))
        return self.lm_head(x)[0]

    @torch.no_grad()
    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        input_ids = self._check_ids(input_ids)
        cos, sin = self.rope_tables(torch.arange(input_ids.shape[1], device=self.device))
        x = F.embedding(input_ids, self.t["model.transformer.wte.weight"])
        for i in range(c.n_layers):
            x = self.block(i, x, cos, sin)
        return rms_norm(x, self.t["model.transformer.ln_f.weight"], c.rms_norm_eps,
                        self._b("model.transformer.ln_f.bias"))

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.weight_tying:
            return linear(h, self.t["model.transformer.wte.weight"])
        return linear(h, self.t["model.transformer.ff_out.weight"], self._b("model.transformer.ff_out.bias"))

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [B, L] (or [L]) -> logits [B, L, embedding_size] in the model dtype."""
        return self.lm_head(self.hidden(input_ids))


def main():
    ap = argparse.ArgumentParser(description="LLaDA reference forward: prints argmax per position")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    m = LLaDA.from_pretrained(a.model_dir, a.dtype, a.device)
    ids = torch.tensor([[int(t) for t in a.tokens.split(",")]])
    logits = m(ids)[0].to(torch.float64)
    print("argmax:", logits.argmax(-1).tolist())
    print("max:", [round(v, 5) for v in logits.max(-1).values.tolist()])


if __name__ == "__main__":
    main()
