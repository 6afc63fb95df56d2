"""Write a random-weight checkpoint in the official format (config.json + safetensors).

    python3 tools/reference/make_checkpoint.py --preset llada-8b --out /tmp/llada8b --device cuda
    python3 tools/reference/make_checkpoint.py --preset dream-7b --out /tmp/dream7b --device cuda
    python3 tools/reference/make_checkpoint.py --preset tiny --out /tmp/tiny
    python3 tools/reference/make_checkpoint.py --preset llada2-mini --out /tmp/llada2mini --device cuda
    python3 tools/reference/make_checkpoint.py --config my_config.json --out DIR

Options: --seed N, --dtype bf16|fp32|fp16, --device cpu|cuda, --shard-gb 5 (more than one
shard -> model-0000k-of-0000n.safetensors + model.safetensors.index.json), --fused-qkv
(LLaDA: one att_proj [q;k;v] per block instead of q_proj/k_proj/v_proj).

Tensors are generated one at a time on --device and written shard by shard, so host
memory holds at most one shard (~--shard-gb). Each tensor has its own generator seeded
from (seed, tensor index), so a tensor's values do not depend on the sharding.

Init (random weights, chosen so activations stay O(1), not to mimic training):
linear weights N(0, 1/fan_in); embeddings N(0, 1); LM head N(0, 1/d_model) so logits are
~N(0, 1); RMSNorm weights 1 + N(0, 0.05^2); biases N(0, 0.02^2).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

# The field set of GSAI-ML/LLaDA-8B-Base config.json (the Instruct config is the same
# apart from auto_map / transformers_version details).
LLADA_8B = {
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": 4096,
    "embedding_dropout": 0.0,
    "embedding_size": 126464,
    "eos_token_id": 126081,
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 126336,
    "max_sequence_length": 4096,
    "mlp_hidden_size": 12288,
    "mlp_ratio": 4,
    "model_type": "llada",
    "multi_query_attention": None,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "pad_token_id": 126081,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "vocab_size": 126464,
    "weight_tying": False,
}

# Dream-org/Dream-v0-Base-7B config.json (Qwen2.5-7B geometry).
DREAM_7B = {
    "architectures": ["DreamModel"],
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_dream.DreamConfig",
        "AutoModel": "modeling_dream.DreamModel",
    },
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "mask_token_id": 151666,
    "max_position_embeddings": 131072,
    "max_window_layers": 28,
    "model_type": "Dream",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "pad_token_id": 151643,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2",
    "use_cache": False,
    "use_sliding_window": False,
    "vocab_size": 152064,
}


def tiny_llada(vocab_size: int = 400, mask_token_id: int = 399, eos_token_id: int = 396) -> dict:
    """The LLaDA fixture geometry: GQA on purpose, embedding_size padded past vocab_size."""
    c = copy.deepcopy(LLADA_8B)
    c.update({
        "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "mlp_hidden_size": 160,
        "mlp_ratio": 4, "vocab_size": vocab_size, "embedding_size": ((vocab_size + 63) // 64) * 64,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "mask_token_id": mask_token_id,
        "max_sequence_length": 512, "eos_token_id": eos_token_id, "pad_token_id": eos_token_id,
    })
    return c


def tiny_dream(vocab_size: int = 512, mask_token_id: int = 500, bos_token_id: int = 497,
               eos_token_id: int = 498) -> dict:
    """The Dream fixture geometry (tests/fixtures/dream_tiny): Qwen2 with GQA, q/k/v biases,
    untied head, rope_theta 1e6 as Dream-7B; vocab_size past the special ids as Dream's
    152064 > 151667 tokens."""
    c = copy.deepcopy(DREAM_7B)
    c.update({
        "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": vocab_size, "max_position_embeddings": 2048,
        "max_window_layers": 2, "mask_token_id": mask_token_id, "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id, "pad_token_id": eos_token_id, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "hidden_act": "silu", "rope_scaling": None,
    })
    return c


PRESETS = {
    "tiny": tiny_llada,
    "llada-tiny": tiny_llada,
    "dream-tiny": tiny_dream,
    "llada-8b": lambda: copy.deepcopy(LLADA_8B),
    "dream-7b": lambda: copy.deepcopy(DREAM_7B),
    # LLaDA2.0-mini's shape, from the repo's configs/ (the official config.json's values).
    "llada2-mini": lambda: json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                       "configs", "llada2-mini", "config.json"))),
}

Spec = Tuple[str, Tuple[int, ...], torch.dtype, str, int]   # name, shape, dtype, kind, fan_in


def arch_of(cfg: dict) -> str:
    mt = str(cfg.get("model_type", "")).lower()
    if mt not in ("llada", "dream", "llada2_moe"):
        raise ValueError(f"model_type '{cfg.get('model_type')}' is not llada, Dream or llada2_moe")
    return mt


def tensor_specs(cfg: dict, dtype: torch.dtype, fused_qkv: bool = False) -> List[Spec]:
    """(name, shape, dtype, kind, fan_in) for every tensor of the official checkpoint, in
    the order the official shards list them (embedding, blocks, final norm, head)."""
    S: List[Spec] = []
    if arch_of(cfg) == "llada":
        d = int(cfg["d_model"])
        H = int(cfg["n_heads"])
        KV = int(cfg.get("n_kv_heads") or H)
        hd = d // H
        ff = int(cfg.get("mlp_hidden_size") or int(cfg.get("mlp_ratio", 4)) * d)
        E = int(cfg.get("embedding_size") or cfg["vocab_size"])
        bias = bool(cfg.get("include_bias", False))
        qkv_bias = bias or bool(cfg.get("include_qkv_bias", False))
        nb = cfg.get("bias_for_layer_norm")
        norm_bias = bias if nb is None else bool(nb)
        S.append(("model.transformer.wte.weight", (E, d), dtype, "embed", d))
        for i in range(int(cfg["n_layers"])):
            p = f"model.transformer.blocks.{i}."
            S.append((p + "attn_norm.weight", (d,), dtype, "norm", d))
            if norm_bias:
                S.append((p + "attn_norm.bias", (d,), dtype, "bias", d))
            if fused_qkv:
                S.append((p + "att_proj.weight", (d + 2 * KV * hd, d), dtype, "linear", d))
                if qkv_bias:
                    S.append((p + "att_proj.bias", (d + 2 * KV * hd,), dtype, "bias", d))
            else:
                for n, o in (("q_proj", d), ("k_proj", KV * hd), ("v_proj", KV * hd)):
                    S.append((p + n + ".weight", (o, d), dtype, "linear", d))
                    if qkv_bias:
                        S.append((p + n + ".bias", (o,), dtype, "bias", d))
            S.append((p + "attn_out.weight", (d, d), dtype, "linear", d))
            if bias:
                S.append((p + "attn_out.bias", (d,), dtype, "bias", d))
            S.append((p + "ff_norm.weight", (d,), dtype, "norm", d))
            if norm_bias:
                S.append((p + "ff_norm.bias", (d,), dtype, "bias", d))
            for n, shp, fan in (("ff_proj", (ff, d), d), ("up_proj", (ff, d), d), ("ff_out", (d, ff), ff)):
                S.append((p + n + ".weight", shp, dtype, "linear", fan))
                if bias:
                    S.append((p + n + ".bias", (shp[0],), dtype, "bias", fan))
        S.append(("model.transformer.ln_f.weight", (d,), dtype, "norm", d))
        if norm_bias:
            S.append(("model.transformer.ln_f.bias", (d,), dtype, "bias", d))
        if not cfg.get("weight_tying", False):
            S.append(("model.transformer.ff_out.weight", (E, d), dtype, "head", d))
            if bias:
                S.append(("model.transformer.ff_out.bias", (E,), dtype, "bias", d))
    elif arch_of(cfg) == "llada2_moe":
        # LLaDA2.0 (modeling_llada2_moe.py names): fused qkv, q/k head norms, dense first layers,
        # then routed experts with a router, its expert_bias (float32) and a shared expert.
        d = int(cfg["hidden_size"])
        H = int(cfg["num_attention_heads"])
        KV = int(cfg.get("num_key_value_heads") or H)
        hd = int(cfg.get("head_dim") or d // H)
        ff, fe = int(cfg["intermediate_size"]), int(cfg["moe_intermediate_size"])
        E, V = int(cfg["num_experts"]), int(cfg["vocab_size"])
        shared = int(cfg.get("num_shared_experts") or 0) * fe
        S.append(("model.word_embeddings.weight", (V, d), dtype, "embed", d))
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"model.layers.{i}."
            S.append((p + "input_layernorm.weight", (d,), dtype, "norm", d))
            S.append((p + "attention.query_key_value.weight", ((H + 2 * KV) * hd, d), dtype, "linear", d))
            if cfg.get("use_qk_norm", True):
                S.append((p + "attention.query_layernorm.weight", (hd,), dtype, "norm", hd))
                S.append((p + "attention.key_layernorm.weight", (hd,), dtype, "norm", hd))
            S.append((p + "attention.dense.weight", (d, H * hd), dtype, "linear", H * hd))
            S.append((p + "post_attention_layernorm.weight", (d,), dtype, "norm", d))
            if i < int(cfg.get("first_k_dense_replace") or 0):
                for n, shp, fan in (("gate_proj", (ff, d), d), ("up_proj", (ff, d), d), ("down_proj", (d, ff), ff)):
                    S.append((p + "mlp." + n + ".weight", shp, dtype, "linear", fan))
                continue
            S.append((p + "mlp.gate.weight", (E, d), dtype, "linear", d))
            if cfg.get("moe_router_enable_expert_bias", True):
                S.append((p + "mlp.gate.expert_bias", (E,), torch.float32, "bias", d))
            for e in range(E):
                for n, shp, fan in (("gate_proj", (fe, d), d), ("up_proj", (fe, d), d), ("down_proj", (d, fe), fe)):
                    S.append((p + f"mlp.experts.{e}." + n + ".weight", shp, dtype, "linear", fan))
            if shared:
                for n, shp, fan in (("gate_proj", (shared, d), d), ("up_proj", (shared, d), d),
                                    ("down_proj", (d, shared), shared)):
                    S.append((p + "mlp.shared_experts." + n + ".weight", shp, dtype, "linear", fan))
        S.append(("model.norm.weight", (d,), dtype, "norm", d))
        if not cfg.get("tie_word_embeddings", False):
            S.append(("lm_head.weight", (V, d), dtype, "head", d))
    else:
        d = int(cfg["hidden_size"])
        H = int(cfg["num_attention_heads"])
        KV = int(cfg.get("num_key_value_heads") or H)
        hd = d // H
        ff = int(cfg["intermediate_size"])
        V = int(cfg["vocab_size"])
        S.append(("model.embed_tokens.weight", (V, d), dtype, "embed", d))
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"model.layers.{i}."
            S.append((p + "input_layernorm.weight", (d,), dtype, "norm", d))
            for n, o in (("q_proj", H * hd), ("k_proj", KV * hd), ("v_proj", KV * hd)):
                S.append((p + "self_attn." + n + ".weight", (o, d), dtype, "linear", d))
                S.append((p + "self_attn." + n + ".bias", (o,), dtype, "bias", d))
            S.append((p + "self_attn.o_proj.weight", (d, H * hd), dtype, "linear", H * hd))
            S.append((p + "post_attention_layernorm.weight", (d,), dtype, "norm", d))
            S.append((p + "mlp.gate_proj.weight", (ff, d), dtype, "linear", d))
            S.append((p + "mlp.up_proj.weight", (ff, d), dtype, "linear", d))
            S.append((p + "mlp.down_proj.weight", (d, ff), dtype, "linear", ff))
        S.append(("model.norm.weight", (d,), dtype, "norm", d))
        if not cfg.get("tie_word_embeddings", False):
            S.append(("lm_head.weight", (V, d), dtype, "head", d))
    return S


def init_tensor(spec: Spec, seed: int, index: int, device="cpu",
                std_scale: Optional[Dict[str, float]] = None) -> torch.Tensor:
    """One tensor with its own generator (seed, index): independent of sharding/order of writes.
    std_scale multiplies the std of the kinds it names (embed, linear, head, norm, bias)."""
    name, shape, dtype, kind, fan_in = spec
    dev = torch.device(device)
    g = torch.Generator(device=dev)
    g.manual_seed((int(seed) * 1000003 + index * 7919 + 17) % (2**63 - 1))
    std = {"embed": 1.0, "linear": 1.0 / math.sqrt(fan_in), "head": 1.0 / math.sqrt(fan_in),
           "norm": 0.05, "bias": 0.02}[kind]
    if std_scale:
        std *= float(std_scale.get(kind, 1.0))
    # Generate in float32 when the target is a float type torch's CPU normal_ may not cover.
    gen_dtype = dtype if (dev.type == "cuda" or dtype in (torch.float32, torch.float64)) else torch.float32
    t = torch.empty(shape, dtype=gen_dtype, device=dev)
    t.normal_(0.0, std, generator=g)
    if kind == "norm":
        t.add_(1.0)
    return t.to(dtype)


def random_tensors(cfg: dict, dtype, device="cpu", seed: int = 0, fused_qkv: bool = False) -> Dict[str, torch.Tensor]:
    """All tensors in memory on `device` (for the tiny fixtures and bench_step's --preset)."""
    dt = st_io.parse_dtype(dtype)
    return {s[0]: init_tensor(s, seed, i, device) for i, s in enumerate(tensor_specs(cfg, dt, fused_qkv))}


def layer_of(name: str) -> int:
    """The decoder layer a tensor belongs to (-1: embeddings, final norm, head)."""
    m = re.search(r"\.(?:layers|blocks)\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def write(cfg: dict, out: str, seed: int = 0, dtype="bf16", device="cpu", shard_gb: float = 5.0,
          fused_qkv: bool = False, log=print, std_scale: Optional[Dict[str, float]] = None,
          layers: Optional[int] = None) -> None:
    dt = st_io.parse_dtype(dtype)
    all_specs = tensor_specs(cfg, dt, fused_qkv)
    # --layers K: only the first K decoder layers' tensors (with the same per-tensor seeds as the
    # whole checkpoint), for models whose whole weights do not fit this machine; config.json keeps
    # every layer (mosaic runs such a checkpoint with --layers K).
    keep = [i for i, s in enumerate(all_specs) if layers is None or layer_of(s[0]) < layers]
    specs = [all_specs[i] for i in keep]
    os.makedirs(out, exist_ok=True)
    c = dict(cfg)
    c["torch_dtype"] = {torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float16: "float16",
                        torch.float64: "float64"}[dt]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    t0 = time.time()
    st_io.write_checkpoint(out, [(s[0], s[1], s[2]) for s in specs],
                           lambda i: init_tensor(all_specs[keep[i]], seed, keep[i], device, std_scale),
                           int(shard_gb * (1 << 30)), log=log)
    if log:
        n = sum(math.prod(s[1]) for s in specs)
        log(f"{out}: {len(specs)} tensors, {n / 1e9:.3f} B params, {time.time() - t0:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", choices=sorted(PRESETS))
    g.add_argument("--config", help="a config.json (model_type llada, Dream, llada2_moe, llada_moe)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--fused-qkv", action="store_true")
    ap.add_argument("--layers", type=int, help="write only the first K decoder layers (config.json keeps all)")
    a = ap.parse_args()
    if a.preset:
        cfg = PRESETS[a.preset]()
    else:
        with open(a.config) as f:
            cfg = json.load(f)
    write(cfg, a.out, a.seed, a.dtype, a.device, a.shard_gb, a.fused_qkv, layers=a.layers)


if __name__ == "__main__":
    main()
