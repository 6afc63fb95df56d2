"""Dream-v0-7B (Dream-org/Dream-v0-Base-7B / -Instruct-7B) forward pass in plain PyTorch.

Dream is Qwen2.5-7B run bidirectionally (modeling_dream.py, attention_mask "full"):

    x = embed_tokens[ids]
    per layer:  h = input_layernorm(x)                  RMSNorm, float32 statistics, cast back, * weight
                q, k, v = q_proj(h), k_proj(h), v_proj(h)   (all three with bias)
                q, k = rope(q), rope(k)                  HF Qwen2 rope: float32 angles and cos/sin, then
                                                        cos/sin cast to the model dtype and applied there
                a = softmax(q k^T / sqrt(hd)) v          no mask; GQA head h reads kv head h // groups
                x = x + o_proj(a)                        (no bias)
                h = post_attention_layernorm(x)
                x = x + down_proj(silu(gate_proj(h)) * up_proj(h))
    logits = lm_head(norm(x))                          (embed_tokens^T when tie_word_embeddings)

Dream's sampler (generation_utils.py) then shifts the logits one position to the right,
logits = cat([logits[:, :1], logits[:, :-1]], 1), so that row i holds the prediction for
token i made from position i-1. `forward(..., shift=True)` (the default) returns that.

Usage: m = Dream.from_pretrained(dir, dtype="float64"); logits = m(ids)
       m.forward_rows(ids, positions, attend): raw logits of some rows at explicit positions that
       attend to keys/values chosen per layer (cached_generate.py)
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from llada import attention, linear, rms_norm, rope_angles, rotate_half  # noqa: E402


class DreamConfig:
    def __init__(self, cfg: dict):
        self.raw = cfg
        if str(cfg.get("model_type", "")).lower() != "dream":
            raise ValueError(f"model_type '{cfg.get('model_type')}' is not Dream")
        self.hidden_size = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv_heads = int(cfg.get("num_key_value_heads") or self.n_heads)
        self.intermediate_size = int(cfg["intermediate_size"])
        self.vocab_size = int(cfg["vocab_size"])
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.rms_norm_eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.mask_token_id = int(cfg.get("mask_token_id", 151666))
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        self.head_dim = self.hidden_size // self.n_heads
        if cfg.get("rope_scaling") not in (None, {}):
            raise ValueError("rope_scaling is not supported by the reference")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {cfg.get('hidden_act')} is not supported")


def L_(i: int, name: str) -> str:
    return f"model.layers.{i}.{name}"


class Dream:
    def __init__(self, config: dict, tensors: Dict[str, torch.Tensor]):
        self.cfg = DreamConfig(config)
        self.t = tensors
        c = self.cfg
        w = tensors["model.embed_tokens.weight"]
        self.dtype, self.device = w.dtype, w.device
        if tuple(w.shape) != (c.vocab_size, c.hidden_size):
            raise ValueError(f"embed_tokens has shape {tuple(w.shape)}, config wants {(c.vocab_size, c.hidden_size)}")
        need = ["model.norm.weight"] + ([] if c.tie else ["lm_head.weight"])
        for i in range(c.n_layers):
            need += [L_(i, n + ".weight") for n in (
                "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
        missing = [n for n in need if n not in tensors]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")

    @classmethod
    def from_pretrained(cls, model_dir: str, dtype="float32", device="cpu") -> "Dream":
        return cls(st_io.read_config(model_dir), st_io.load_tensors(model_dir, dtype=dtype, device=device))

    @property
    def mask_token_id(self) -> int:
        return self.cfg.mask_token_id

    def _lin(self, x, name, bias=True):
        return linear(x, self.t[name + ".weight"], self.t.get(name + ".bias") if bias else None)

    def layer_qkv(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer i's post-rope q [B, H, R, hd] and k, v [B, Hkv, R, hd] of the rows in x [B, R, d]."""
        c = self.cfg
        B, L, _ = x.shape
        h = rms_norm(x, self.t[L_(i, "input_layernorm.weight")], c.rms_norm_eps)
        q = self._lin(h, L_(i, "self_attn.q_proj")).reshape(B, L, c.n_heads, c.head_dim).transpose(1, 2)
        k = self._lin(h, L_(i, "self_attn.k_proj")).reshape(B, L, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self._lin(h, L_(i, "self_attn.v_proj")).reshape(B, L, c.n_kv_heads, c.head_dim).transpose(1, 2)
        del h
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def layer_out(self, i: int, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The rest of layer i: the rows' queries attend to k, v (any number of keys, kv heads)."""
        c = self.cfg
        B, L, _ = x.shape
        N = k.shape[2]
        g = c.n_heads // c.n_kv_heads
        if g > 1:  # repeat_kv: expand on a new dim 2 then flatten -> head h uses kv head h // g
            k = k[:, :, None].expand(B, c.n_kv_heads, g, N, c.head_dim).reshape(B, c.n_heads, N, c.head_dim)
            v = v[:, :, None].expand(B, c.n_kv_heads, g, N, c.head_dim).reshape(B, c.n_heads, N, c.head_dim)
        a = attention(q, k, v)
        del q, k, v
        a = a.transpose(1, 2).reshape(B, L, c.hidden_size)
        x = x + self._lin(a, L_(i, "self_attn.o_proj"), bias=False)
        del a
        h = rms_norm(x, self.t[L_(i, "post_attention_layernorm.weight")], c.rms_norm_eps)
        gt = F.silu(self._lin(h, L_(i, "mlp.gate_proj"), bias=False))
        gt = gt * self._lin(h, L_(i, "mlp.up_proj"), bias=False)
        del h
        return x + self._lin(gt, L_(i, "mlp.down_proj"), bias=False)

    def layer(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.layer_qkv(i, x, cos, sin)
        return self.layer_out(i, x, q, k, v)

    def rope_tables(self, positions: torch.Tensor):
        """cos, sin [1, 1, R, hd] for absolute positions; HF: computed in float32 (float64 in a
        float64 run), returned in the model dtype, the rotation done in the model dtype."""
        c = self.cfg
        ang = rope_angles(positions.to(self.device), c.head_dim, c.rope_theta)
        if self.dtype == torch.float64:
            ang = ang.to(torch.float64)
        return ang.cos().to(self.dtype)[None, None], ang.sin().to(self.dtype)[None, None]

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        x = rms_norm(x, self.t["model.norm.weight"], self.cfg.rms_norm_eps)
        head = self.t["model.embed_tokens.weight"] if self.cfg.tie else self.t["lm_head.weight"]
        return linear(x, head)

    @torch.no_grad()
    def forward_rows(self, ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        """RAW (unshifted) logits [R, vocab] of R rows (ids [R] at absolute positions [R]) whose
        queries attend to what attend(layer, q, k, v) -> (K, V) returns per layer (q [1, H, R, hd],
        k, v [1, Hkv, R, hd] the rows' own post-rope ones; K, V [1, Hkv, N, hd])."""
        ids = ids.reshape(1, -1).to(self.device)
        cos, sin = self.rope_tables(torch.as_tensor(positions))
        x = F.embedding(ids, self.t["model.embed_tokens.weight"])
        for i in range(self.cfg.n_layers):
            q, k, v = self.layer_qkv(i, x, cos, sin)
            ka, va = attend(i, q, k, v)
            x = self.layer_out(i, x, q, ka, va)
            del q, k, v, ka, va
        return self._final(x)[0]

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, shift: bool = True) -> torch.Tensor:
        """input_ids [B, L] -> logits [B, L, vocab_size]; shift=True applies Dream's sampler shift."""
        c = self.cfg
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        input_ids = input_ids.to(self.device)
        cos, sin = self.rope_tables(torch.arange(input_ids.shape[1], device=self.device))
        x = F.embedding(input_ids, self.t["model.embed_tokens.weight"])
        for i in range(c.n_layers):
            x = self.layer(i, x, cos, sin)
        logits = self._final(x)
        if shift:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits


def main():
    ap = argparse.ArgumentParser(description="Dream reference forward (shifted logits): argmax per position")
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    m = Dream.from_pretrained(a.model_dir, a.dtype, a.device)
    logits = m(torch.tensor([[int(t) for t in a.tokens.split(",")]]))[0]
    print("argmax:", logits.argmax(-1).tolist())


if __name__ == "__main__":
    main()
