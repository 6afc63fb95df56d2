#!/usr/bin/env python3
"""Pre-train a small LLaDA-architecture masked-diffusion LM and export it in the official
LLaDA checkpoint format (config.json + bf16 model.safetensors + tokenizer files).

    python3 tools/train/train.py --out OUTDIR                  # real config, GPU, 8 min budget
    python3 tools/train/train.py --tiny --out /tmp/tiny        # CPU smoke test (~1 min)
    python3 tools/train/train.py --out OUTDIR --resume tools/train/work/last.pt

Model (LLaDA-8B's block, scaled down; names as the official checkpoint):
    x = wte[ids]
    per block:  h = attn_norm(x)   (RMSNorm: fp32 statistics, cast back, * weight)
                q, k, v = q_proj(h), k_proj(h), v_proj(h)        (no bias)
                q, k = rope(q), rope(k)    in fp32; inv_freq = 1/theta^(arange(0,hd,2)/hd),
                                           angles cat(freqs, freqs), rotate_half by halves
                x = x + attn_out(softmax(q k^T / sqrt(hd)) v)    bidirectional
                h = ff_norm(x);  x = x + ff_out(silu(ff_proj(h)) * up_proj(h))
    logits = ff_out(ln_f(x))                                      (untied LM head)

Objective (LLaDA pre-training): x0 = [bos] + a window of the tokenized corpus starting at
a line start; t ~ U(eps, 1] (stratified over the batch); each token but the bos is
replaced by <|mdm_mask|> with probability t; loss = sum over masked positions of
CE / t, divided by the number of maskable tokens of the batch. With probability
--random-length-prob a whole batch is cut to a random length (as LLaDA does with 1%).

The LR schedule is linear warmup + cosine decay over --steps; --steps 0 (default) measures
the step time over --calib-steps steps (after the first 10) and picks the number of steps that fits the time
budget (--time-budget-min, counted from the process start or --deadline-unix, minus
--reserve-s for the final evaluation/export/samples). A checkpoint with optimizer state is
written every --ckpt-every-s and at the end (--ckpt), so a run can be resumed (--resume).

At the end: export (bf16), reload check (names/shapes/dtypes; logits of the reloaded
weights vs tools/reference/llada.py), held-out diffusion loss and masked-token accuracy
with fixed t values and fixed masks, samples with LLaDA's low-confidence sampler
(tools/reference/generate.py), all written to --metrics (JSON).

Runs on PyTorch 1.13 (CPU, no SDPA) and 2.x (CUDA, bf16 autocast, SDPA, fused AdamW).
"""
from __future__ import annotations

import time

T_PROCESS = time.time()   # the time budget counts from here (before the heavy imports)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
REFERENCE = os.path.join(ROOT, "tools", "reference")
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
PREFIX = "model.transformer."


def log(*a):
    print(*a, flush=True)


# ============================================================================ model
class RMSNorm(nn.Module):
    """LLaDA's RMSLayerNorm: statistics in fp32 (autocast off), cast back, then * weight."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        og = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(og)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, H, KV = c["d_model"], c["n_heads"], c["n_kv_heads"]
        hd = d // H
        ff = c["mlp_hidden_size"]
        self.H, self.KV, self.hd = H, KV, hd
        self.attn_norm = RMSNorm(d, c["rms_norm_eps"])
        self.q_proj = nn.Linear(d, H * hd, bias=False)
        self.k_proj = nn.Linear(d, KV * hd, bias=False)
        self.v_proj = nn.Linear(d, KV * hd, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, c["rms_norm_eps"])
        self.ff_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.ff_out = nn.Linear(ff, d, bias=False)
        self.dropout = float(c.get("_dropout", 0.0))

    def rope(self, x, cos, sin):
        xf = x.float()   # rope_full_precision
        return ((xf * cos) + (rotate_half(xf) * sin)).to(x.dtype)

    def attention(self, q, k, v):
        if HAS_SDPA:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        p = torch.softmax(s.float(), dim=-1).to(q.dtype)
        return torch.matmul(p, v)

    def forward(self, x, cos, sin):
        B, L, D = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(B, L, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, L, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, L, self.KV, self.hd).transpose(1, 2)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        a = self.attention(q, k, v).transpose(1, 2).reshape(B, L, D)
        a = self.attn_out(a)
        if self.dropout and self.training:
            a = F.dropout(a, self.dropout, True)
        x = x + a
        h = self.ff_norm(x)
        m = self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))
        if self.dropout and self.training:
            m = F.dropout(m, self.dropout, True)
        return x + m


class LLaDAModel(nn.Module):
    """state_dict keys + PREFIX = the official tensor names."""

    def __init__(self, c: dict):
        super().__init__()
        self.c = c
        d = c["d_model"]
        self.wte = nn.Embedding(c["embedding_size"], d)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c["n_layers"])])
        self.ln_f = RMSNorm(d, c["rms_norm_eps"])
        self.ff_out = nn.Linear(d, c["embedding_size"], bias=False)
        self.hd = d // c["n_heads"]
        self._rope_cache = {}

    def init_weights(self, std: float = 0.02):
        n = self.c["n_layers"]
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith("attn_out.weight") or (name.startswith("blocks.") and name.endswith("ff_out.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * n))
            else:
                nn.init.normal_(p, 0.0, std)

    def rope_tables(self, L: int, device):
        key = (L, str(device))
        if key not in self._rope_cache:
            hd, theta = self.hd, float(self.c["rope_theta"])
            inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
            seq = torch.arange(L, device=device, dtype=torch.float32)
            freqs = torch.einsum("i,j->ij", seq, inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self._rope_cache[key] = (emb.cos()[None, None], emb.sin()[None, None])
        return self._rope_cache[key]

    def forward(self, ids):
        cos, sin = self.rope_tables(ids.shape[1], ids.device)
        x = self.wte(ids)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.ff_out(self.ln_f(x))


def model_config(a, tok_ids: Dict[str, int], vocab: int) -> dict:
    return {
        "d_model": a.d_model, "n_layers": a.n_layers, "n_heads": a.n_heads,
        "n_kv_heads": a.n_kv_heads or a.n_heads, "mlp_hidden_size": a.mlp_hidden,
        "vocab_size": vocab, "embedding_size": vocab, "rope_theta": a.rope_theta, "rms_norm_eps": 1e-5,
        "mask_token_id": tok_ids["<|mdm_mask|>"], "bos_token_id": tok_ids["<|startoftext|>"],
        "eos_token_id": tok_ids["<|endoftext|>"], "pad_token_id": tok_ids["<|endoftext|>"],
        "max_sequence_length": a.seq_len, "_dropout": a.dropout,
    }


# The field set of GSAI-ML/LLaDA-8B-Base's config.json, geometry filled in by export().
# (auto_map is left out: its modeling files are not shipped with this checkpoint.)
LLADA_CONFIG = {
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": None,
    "embedding_dropout": 0.0, "embedding_size": None, "eos_token_id": None, "flash_attention": False,
    "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None, "init_device": "meta",
    "init_fn": "normal", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "mask_token_id": None, "max_sequence_length": None,
    "mlp_hidden_size": None, "mlp_ratio": None, "model_type": "llada", "multi_query_attention": None,
    "n_heads": None, "n_kv_heads": None, "n_layers": None, "pad_token_id": None, "bos_token_id": None,
    "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": None, "rope": True,
    "rope_full_precision": True, "rope_theta": None, "scale_logits": False, "torch_dtype": "bfloat16",
    "use_cache": False, "vocab_size": None, "weight_tying": False,
}


def official_config(c: dict) -> dict:
    out = dict(LLADA_CONFIG)
    for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "vocab_size", "embedding_size",
              "rope_theta", "rms_norm_eps", "mask_token_id", "max_sequence_length", "eos_token_id",
              "pad_token_id", "bos_token_id"):
        out[k] = c[k]
    out["mlp_ratio"] = max(1, round(c["mlp_hidden_size"] / c["d_model"]))
    missing = [k for k, v in out.items() if v is None and k not in ("init_cutoff_factor", "multi_query_attention")]
    assert not missing, missing
    return out


def expected_tensors(c: dict) -> Dict[str, tuple]:
    d, E, ff = c["d_model"], c["embedding_size"], c["mlp_hidden_size"]
    kvd = c["n_kv_heads"] * (d // c["n_heads"])
    out = {PREFIX + "wte.weight": (E, d)}
    for i in range(c["n_layers"]):
        p = f"{PREFIX}blocks.{i}."
        out.update({p + "attn_norm.weight": (d,), p + "q_proj.weight": (d, d), p + "k_proj.weight": (kvd, d),
                    p + "v_proj.weight": (kvd, d), p + "attn_out.weight": (d, d), p + "ff_norm.weight": (d,),
                    p + "ff_proj.weight": (ff, d), p + "up_proj.weight": (ff, d), p + "ff_out.weight": (d, ff)})
    out[PREFIX + "ln_f.weight"] = (d,)
    out[PREFIX + "ff_out.weight"] = (E, d)
    return out


# ============================================================================ data
class Corpus:
    """The tokenized text as one int stream (chapters concatenated, exactly as the file
    tokenizes as a whole) and the offsets where lines start."""

    def __init__(self, tok, path: str):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.n_bytes = len(text.encode())
        parts = text.split("\n\n")
        chunks = [p + "\n\n" for p in parts[:-1]] + [parts[-1]]
        chunks = [c for c in chunks if c]
        ids = [e.ids for e in tok.encode_batch(chunks, add_special_tokens=False)]
        self.stream = np.fromiter((t for s in ids for t in s), dtype=np.int64)
        vocab = tok.get_vocab()
        inv = {v: k for k, v in vocab.items()}
        nl = np.zeros(tok.get_vocab_size(), dtype=bool)
        for i in range(tok.get_vocab_size()):
            s = inv.get(i, "")
            nl[i] = s.endswith("\u010a")   # ByteLevel's "\n"
        after_nl = np.nonzero(nl[self.stream[:-1]])[0] + 1
        self.line_starts = np.concatenate([[0], after_nl]).astype(np.int64)

    def starts(self, body: int) -> np.ndarray:
        """Line starts s with a full window stream[s : s + body]."""
        return self.line_starts[self.line_starts + body <= len(self.stream)]

    def fixed_windows(self, body: int, n_max: int, bos: int) -> torch.Tensor:
        """Deterministic [N, body+1] windows ([bos] + body tokens) starting at line starts,
        non-overlapping, spread evenly over the stream (at most n_max)."""
        st = self.starts(body)
        chosen, nxt = [], 0
        for s in st:
            if s >= nxt:
                chosen.append(int(s))
                nxt = s + body
        if len(chosen) > n_max:
            idx = np.linspace(0, len(chosen) - 1, n_max).round().astype(int)
            chosen = [chosen[i] for i in idx]
        w = np.stack([np.concatenate([[bos], self.stream[s:s + body]]) for s in chosen])
        return torch.from_numpy(w)


# ============================================================================ objective / eval
def diffusion_loss(model, x0, mask_id: int, eps: float, autocast):
    """LLaDA pre-training loss on x0 [B, L] (position 0 = bos, never masked)."""
    B, L = x0.shape
    dev = x0.device
    u = torch.rand((), device=dev)
    t = ((u + torch.arange(B, device=dev, dtype=torch.float32) / B) % 1.0) * (1.0 - eps) + eps
    mask = torch.rand((B, L), device=dev) < t[:, None]
    mask[:, 0] = False
    xt = torch.where(mask, torch.full_like(x0, mask_id), x0)
    with autocast():
        logits = model(xt)
    ce = F.cross_entropy(logits.float().reshape(B * L, -1), x0.reshape(-1), reduction="none").view(B, L)
    return (ce * mask / t[:, None]).sum() / (B * (L - 1))


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, mask_id: int, device, autocast, n_t: int = 8, seed: int = 1234,
             batch: int = 128, forward=None) -> dict:
    """Fixed t values t_j = (j + 0.5) / n_t for every window and fixed masks (CPU generator
    seeded with `seed`): reproducible. Returns the diffusion loss (the LLaDA bound, nats per
    token: mean over examples of sum_masked CE / t / (L-1)), the plain CE per masked token,
    masked-token accuracy, and both per t. `forward(xt, x0) -> logits` replaces `model(xt)`
    (train_llada2.py: the block-diffusion forward also reads the clean x0)."""
    was = model.training
    model.eval()
    N, L = windows.shape
    g = torch.Generator().manual_seed(seed)
    ts = torch.tensor([(j + 0.5) / n_t for j in range(n_t)], dtype=torch.float32)
    x0 = windows.repeat_interleave(n_t, dim=0)                       # [N*n_t, L]
    t = ts.repeat(N)                                                 # [N*n_t]
    mask = torch.rand(x0.shape, generator=g) < t[:, None]
    mask[:, 0] = False
    bound = torch.zeros(n_t, dtype=torch.float64)
    ce_sum = torch.zeros(n_t, dtype=torch.float64)
    correct = torch.zeros(n_t, dtype=torch.float64)
    count = torch.zeros(n_t, dtype=torch.float64)
    for i in range(0, x0.shape[0], batch):
        xb, mb, tb = x0[i:i + batch].to(device), mask[i:i + batch].to(device), t[i:i + batch].to(device)
        xt = torch.where(mb, torch.full_like(xb, mask_id), xb)
        with autocast():
            logits = model(xt) if forward is None else forward(xt, xb)
        logits = logits.float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb.reshape(-1), reduction="none").view(xb.shape)
        ok = (logits.argmax(-1) == xb) & mb
        j = torch.arange(i, i + xb.shape[0]) % n_t
        bound.index_add_(0, j, ((ce * mb).sum(1) / tb / (L - 1)).double().cpu())
        ce_sum.index_add_(0, j, (ce * mb).sum(1).double().cpu())
        correct.index_add_(0, j, ok.sum(1).double().cpu())
        count.index_add_(0, j, mb.sum(1).double().cpu())
    model.train(was)
    return {
        "windows": N, "tokens_per_window": L, "t_values": [round(float(x), 4) for x in ts],
        "diffusion_loss": float(bound.sum() / (N * n_t)),
        "masked_ce": float(ce_sum.sum() / count.sum()),
        "masked_accuracy": float(correct.sum() / count.sum()),
        "masked_tokens": int(count.sum()),
        "masked_ce_per_t": [round(float(x), 4) for x in ce_sum / count.clamp(min=1)],
        "masked_accuracy_per_t": [round(float(x), 4) for x in correct / count.clamp(min=1)],
    }


# ============================================================================ sampling
@torch.no_grad()
def local_generate(model, prompt: List[int], gen_length: int, steps: int, block_length: int, mask_id: int,
                   device) -> List[int]:
    """Greedy LLaDA low-confidence remasking (the official generate() with temperature 0,
    cfg 0; ties -> lower position). Used only when tools/reference is not importable."""
    model.eval()
    P = len(prompt)
    x = torch.full((1, P + gen_length), mask_id, dtype=torch.long, device=device)
    x[0, :P] = torch.tensor(prompt, device=device)
    nb = gen_length // block_length
    spb = steps // nb
    for b in range(nb):
        b1 = P + (b + 1) * block_length
        n = int((x[0, P + b * block_length:b1] == mask_id).sum())
        sched = [n // spb + (1 if i < n % spb else 0) for i in range(spb)]
        for i in range(spb):
            logits = model(x)[0].float()
            cand = torch.nonzero(x[0, :b1] == mask_id).flatten()
            cl = logits[cand]
            x0 = cl.argmax(-1)
            conf = torch.softmax(cl, -1).gather(-1, x0[:, None])[:, 0].cpu().numpy()
            sel = np.argsort(-conf, kind="stable")[:sched[i]]
            sel_t = torch.as_tensor(sel, dtype=torch.long, device=cand.device)
            x[0, cand[sel_t]] = x0[sel_t]
    return x[0].tolist()


SAMPLE_PROMPTS = [
    # (prompt, gen_length, steps, block_length)
    ("In the beginning", 64, 64, 32),
    ("And Jesus said unto them,", 64, 64, 32),
    ("Psalms 151\n", 64, 64, 32),
    ("Blessed are the", 64, 32, 32),
    ("Once upon a time", 128, 128, 32),   # mosaic generate's default prompt and settings
]


def run_samples(out_dir: str, model_fb, tok, mask_id: int, bos: int, device, n: int) -> List[dict]:
    """Greedy samples of the exported checkpoint with the reference sampler (float32 on `device`)."""
    res = []
    ref = None
    try:
        sys.path.insert(0, REFERENCE)
        from generate import generate as ref_generate  # noqa: E402
        from llada import LLaDA as RefLLaDA  # noqa: E402
        ref = RefLLaDA.from_pretrained(out_dir, "float32", str(device))
    except Exception as e:  # noqa: BLE001
        log(f"samples: tools/reference not usable ({type(e).__name__}: {e}); using the local sampler")
    for prompt, gl, steps, bl in SAMPLE_PROMPTS[:n]:
        ids = [bos] + tok.encode(prompt, add_special_tokens=False).ids
        t0 = time.time()
        out = None
        if ref is not None:
            try:
                out = ref_generate(ref, ids, steps=steps, gen_length=gl, block_length=bl, temperature=0.0,
                                   remasking="low_confidence", mask_id=mask_id).tokens
                sampler = f"tools/reference/generate.py (float32, {device.type})"
            except Exception as e:  # noqa: BLE001
                log(f"samples: tools/reference/generate.py failed ({type(e).__name__}: {e}); local sampler")
                ref = None
        if out is None:
            out = local_generate(model_fb, ids, gl, steps, bl, mask_id, device)
            sampler = "train.py local_generate"
        gen = out[len(ids):]
        text = tok.decode(gen, skip_special_tokens=True)
        res.append({"prompt": prompt, "gen_length": gl, "steps": steps, "block_length": bl, "temperature": 0.0,
                    "remasking": "low_confidence", "sampler": sampler, "prompt_tokens": ids,
                    "output_tokens": gen, "text": text, "seconds": round(time.time() - t0, 2)})
        log(f"--- sample ({gl} tokens, {steps} steps, block {bl}): {prompt!r}\n{prompt}{text}")
    return res


# ============================================================================ export / checks
def export(model: LLaDAModel, c: dict, tok_dir: str, out_dir: str) -> dict:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    sd = {PREFIX + k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    exp = expected_tensors(c)
    assert set(sd) == set(exp), (sorted(set(sd) ^ set(exp)))[:5]
    ordered = {k: sd[k] for k in exp}
    save_file(ordered, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    cfg = official_config(c)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    shutil.copyfile(os.path.join(tok_dir, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(tok_dir, "tokenizer_config.json")) as f:
        tc = json.load(f)
    tc["model_max_length"] = c["max_sequence_length"]
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
        f.write("\n")
    return cfg


def reload_check(out_dir: str, c: dict, probe: torch.Tensor, mask_id: int) -> tuple:
    """Reads the export back: exact name set, shapes, bf16; loads it strictly into a fresh
    model; compares its logits (fp32 compute) with tools/reference/llada.py on `probe`."""
    from safetensors import safe_open

    exp = expected_tensors(c)
    with open(os.path.join(out_dir, "config.json")) as f:
        cfg = json.load(f)
    for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "vocab_size", "embedding_size",
              "mask_token_id"):
        assert cfg[k] == c[k], (k, cfg[k], c[k])
    sd = {}
    with safe_open(os.path.join(out_dir, "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
        for n in names:
            sd[n] = f.get_tensor(n)
    assert set(names) == set(exp), sorted(set(names) ^ set(exp))[:5]
    for n, t in sd.items():
        assert tuple(t.shape) == exp[n], (n, tuple(t.shape), exp[n])
        assert t.dtype == torch.bfloat16, (n, t.dtype)
    m = LLaDAModel(c)
    m.load_state_dict({k[len(PREFIX):]: v.float() for k, v in sd.items()}, strict=True)
    m.eval()
    info = {"tensors": len(names), "names_shapes_dtypes": "ok", "params": sum(t.numel() for t in sd.values()),
            "safetensors_bytes": os.path.getsize(os.path.join(out_dir, "model.safetensors"))}
    x = probe.clone()
    x[:, 3::4] = mask_id
    with torch.no_grad():
        mine = m(x).double()
    info["ok"] = True
    try:
        sys.path.insert(0, REFERENCE)
        from llada import LLaDA as RefLLaDA  # noqa: E402
    except ImportError as e:
        info["reference_logits_max_abs_diff"] = f"not checked ({e})"
        return m, info
    try:
        ref = RefLLaDA.from_pretrained(out_dir, "float32", "cpu")
        theirs = ref(x).double()
        diff = float((mine - theirs).abs().max())
        info["reference_logits_max_abs_diff"] = diff
        info["reference_argmax_agree"] = float((mine.argmax(-1) == theirs.argmax(-1)).double().mean())
        if not diff < 1e-2:
            info["ok"] = False
            info["error"] = f"logits differ from tools/reference/llada.py by {diff}"
    except Exception as e:  # noqa: BLE001  (the reference is another engineer's moving code)
        info["reference_logits_max_abs_diff"] = f"not checked ({type(e).__name__}: {e})"
    return m, info


# ============================================================================ main
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus.txt"))
    ap.add_argument("--heldout", default=os.path.join(HERE, "data", "heldout.txt"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "data", "tokenizer"),
                    help="directory with tokenizer.json and tokenizer_config.json (train_tokenizer.py)")
    ap.add_argument("--out", required=True, help="export directory (config.json, model.safetensors, tokenizer*)")
    ap.add_argument("--metrics", default=None, help="metrics JSON (default OUT/metrics.json)")
    ap.add_argument("--ckpt", default=os.path.join(HERE, "work", "last.pt"), help="resumable checkpoint")
    ap.add_argument("--resume", default=None, help="checkpoint to resume from (model + optimizer + schedule)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: d 64, 2 layers, 200 steps, 1 min")
    # model
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=8)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--n-kv-heads", type=int, default=0, help="0 = n_heads (MHA, as LLaDA-8B)")
    ap.add_argument("--mlp-hidden", type=int, default=768)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout (training only)")
    # optimisation
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eps", type=float, default=1e-3, help="t ~ U(eps, 1]")
    ap.add_argument("--random-length-prob", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=None, help="0 (default) = as many as fit in the time budget")
    ap.add_argument("--time-budget-min", type=float, default=8.0, help="whole process, final phase included")
    ap.add_argument("--deadline-unix", type=float, default=0.0, help="absolute deadline (overrides the budget)")
    ap.add_argument("--plan-min", type=float, default=0.0,
                    help="plan the schedule for this many training minutes (a run over several calls; "
                         "default: what fits in this call)")
    ap.add_argument("--reserve-s", type=float, default=45.0, help="time kept for eval/export/samples")
    ap.add_argument("--calib-steps", type=int, default=40)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--ckpt-every-s", type=float, default=120.0)
    ap.add_argument("--eval-windows", type=int, default=96, help="held-out windows (all there are, up to this)")
    ap.add_argument("--samples", type=int, default=len(SAMPLE_PROMPTS))
    ap.add_argument("--sample-device", default="auto", help="device of the reference sampler (auto = training's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (torch 2.x)")
    a = ap.parse_args()
    if a.tiny:   # smoke-test geometry; flags given explicitly win
        tiny = {"d_model": 64, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "mlp_hidden": 192, "seq_len": 128,
                "batch_size": 8, "warmup": 20, "log_every": 20, "eval_every": 100, "eval_windows": 16,
                "steps": 200, "time_budget_min": 1.0, "reserve_s": 15.0, "lr": 3e-3}
        given = {x.split("=")[0] for x in sys.argv[1:] if x.startswith("--")}
        for k, v in tiny.items():
            if "--" + k.replace("_", "-") not in given:
                setattr(a, k, v)
    a.steps = a.steps or 0
    return a


def lr_at(step: int, a, total: int) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, total - a.warmup))
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def plan_steps(step: int, dt: float, avail: float, eval_every: int, eval_s: float, warmup: int) -> int:
    """The schedule's total step count: what fits in `avail` seconds at `dt` s/step, minus the
    periodic evals (`eval_s` each, every `eval_every` steps), with a 3% margin."""
    n_evals = 1 + int(avail / dt) // eval_every
    total = step + max(1, int((avail - n_evals * eval_s) * 0.97 / dt))
    return max(total, warmup + 1)


def steps_that_fit(step: int, per: float, remaining: float) -> int:
    """Re-planning: the step reached when `remaining` seconds go at the measured `per` s/step."""
    return step + int(remaining / per)


def main():
    a = parse_args()
    deadline = a.deadline_unix if a.deadline_unix > 0 else T_PROCESS + a.time_budget_min * 60.0
    train_deadline = deadline - a.reserve_s
    dev = torch.device("cuda" if (a.device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if a.device == "auto" else a.device))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    metrics_path = a.metrics or os.path.join(a.out, "metrics.json")

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    specials = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|mdm_mask|>"]
    tok_ids = {s: tok.token_to_id(s) for s in specials}
    assert all(v is not None for v in tok_ids.values()), tok_ids
    bos, mask_id = tok_ids["<|startoftext|>"], tok_ids["<|mdm_mask|>"]

    t0 = time.time()
    train_c = Corpus(tok, a.corpus)
    held_c = Corpus(tok, a.heldout)
    body = a.seq_len - 1
    starts = torch.from_numpy(train_c.starts(body)).to(dev)
    stream = torch.from_numpy(train_c.stream).to(dev)
    held_w = held_c.fixed_windows(body, a.eval_windows, bos)
    train_w = train_c.fixed_windows(body, held_w.shape[0], bos)
    log(f"data: train {len(train_c.stream)} tokens ({train_c.n_bytes} bytes, {len(starts)} window starts), "
        f"held-out {len(held_c.stream)} tokens -> {held_w.shape[0]} eval windows of {a.seq_len}; "
        f"{time.time() - t0:.1f} s")

    c = model_config(a, tok_ids, vocab)
    model = LLaDAModel(c)
    model.init_weights()
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.wte.weight.numel() + model.ff_out.weight.numel()
    log(f"model: d {a.d_model}, {a.n_layers} layers, {a.n_heads} heads (kv {c['n_kv_heads']}), mlp "
        f"{a.mlp_hidden}, vocab {vocab}: {n_params / 1e6:.2f} M params ({(n_params - n_emb) / 1e6:.2f} M "
        f"non-embedding); device {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if cuda else ""))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("wte")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("wte"))]
    groups = [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = None
    if cuda:
        try:
            opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
        except (TypeError, RuntimeError):
            opt = None
    if opt is None:
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    step, total, tokens_seen, train_time_prev = 0, a.steps, 0, 0.0
    history: List[dict] = []
    if a.resume:
        try:
            ck = torch.load(a.resume, map_location="cpu", weights_only=False)
        except TypeError:   # torch < 1.13
            ck = torch.load(a.resume, map_location="cpu")
        for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "embedding_size"):
            assert ck["config"][k] == c[k], f"--resume: {k} is {ck['config'][k]} there, {c[k]} here"
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, tokens_seen, history = ck["step"], ck["tokens_seen"], ck.get("history", [])
        total = a.steps or ck["total_steps"]
        train_time_prev = ck.get("train_time_s", 0.0)
        torch.manual_seed(a.seed + step)
        log(f"resumed {a.resume}: step {step} of {total}, {tokens_seen / 1e6:.1f} M tokens seen")

    run_model = model
    if a.compile and hasattr(torch, "compile"):
        run_model = torch.compile(model)
        log("torch.compile: on")

    def save_ckpt(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "total_steps": total,
                    "tokens_seen": tokens_seen, "config": c, "args": vars(a), "history": history,
                    "train_time_s": train_time_prev + (time.time() - t_train0)}, tmp)
        os.replace(tmp, path)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    t_e = time.time()
    e0 = evaluate(model, held_w, mask_id, dev, autocast)
    eval_s = time.time() - t_e
    if cuda:   # the first call includes the CUDA warm-up: time a second one for the plan
        sync()
        t_e = time.time()
        evaluate(model, held_w, mask_id, dev, autocast)
        eval_s = time.time() - t_e
    log(f"eval @ step {step}: held-out diffusion loss {e0['diffusion_loss']:.4f}, masked acc "
        f"{e0['masked_accuracy']:.4f}")
    if step == 0:
        history.append({"step": 0, "heldout_diffusion_loss": e0["diffusion_loss"],
                        "heldout_masked_accuracy": e0["masked_accuracy"]})

    B, L = a.batch_size, a.seq_len
    ar = torch.arange(body, device=dev)
    bos_col = torch.full((B, 1), bos, dtype=torch.long, device=dev)
    model.train()
    t_train0 = time.time()
    last_ckpt = time.time()
    loss_acc = torch.zeros((), device=dev)
    n_acc, tok_acc, t_log = 0, 0, time.time()
    calib_t0 = None
    calib_start = step + min(10, max(1, a.warmup // 4))
    stop_reason = "steps done"
    last_loss = float("nan")
    while True:
        if total and step >= total:
            break
        now = time.time()
        if now >= train_deadline:
            stop_reason = "time budget"
            break
        # --- schedule: pick the number of steps from the measured speed
        if not a.steps and step == calib_start and calib_t0 is None and not (a.resume and total):
            sync()
            calib_t0, calib_step0 = time.time(), step
        if calib_t0 is not None and not total and step == calib_step0 + a.calib_steps:
            sync()
            dt = (time.time() - calib_t0) / a.calib_steps
            avail = (a.plan_min * 60.0 - (time.time() - t_train0)) if a.plan_min > 0 else (train_deadline - time.time())
            total = plan_steps(step, dt, avail, a.eval_every, eval_s, a.warmup)
            log(f"schedule: {dt * 1000:.1f} ms/step ({B * L / dt / 1e3:.1f} k tokens/s), eval {eval_s:.1f} s -> "
                f"{total} steps ({total * B * L / 1e6:.1f} M tokens, {total * B * body / len(train_c.stream):.1f} "
                f"epochs)")
        lr = lr_at(step, a, total or 10 ** 9)
        for g in opt.param_groups:
            g["lr"] = lr
        # --- batch
        idx = starts[torch.randint(len(starts), (B,), device=dev)]
        x0 = torch.cat([bos_col, stream[idx[:, None] + ar]], dim=1)
        if a.random_length_prob > 0 and torch.rand(()) < a.random_length_prob:   # CPU RNG: no sync
            x0 = x0[:, :int(torch.randint(2, L + 1, ()))]
        loss = diffusion_loss(run_model, x0, mask_id, a.eps, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        step += 1
        tokens_seen += x0.numel()
        loss_acc += loss.detach()
        n_acc += 1
        tok_acc += x0.numel()
        if step % a.log_every == 0 or (total and step == total):
            last_loss = float(loss_acc) / n_acc
            el = time.time() - t_log
            log(f"step {step}/{total or '?'}  loss {last_loss:.4f}  lr {lr:.2e}  {tok_acc / el / 1e3:.1f} k tok/s  "
                f"elapsed {time.time() - T_PROCESS:.0f} s")
            if not math.isfinite(last_loss):
                sys.exit("loss is not finite")
            history.append({"step": step, "train_loss": last_loss, "lr": lr})
            # re-plan (shrink only) when evals/checkpoints/slowdowns made the run slower than calibrated
            if calib_t0 is not None and total and not a.steps and a.plan_min <= 0 and step > calib_step0:
                per = (time.time() - calib_t0) / (step - calib_step0)
                fit = steps_that_fit(step, per, train_deadline - time.time())
                if fit < total:
                    log(f"schedule: {total} -> {fit} steps (measured {per * 1000:.1f} ms/step)")
                    total = max(step, fit)
            loss_acc.zero_()
            n_acc, tok_acc, t_log = 0, 0, time.time()
        if step % a.eval_every == 0:
            e = evaluate(model, held_w, mask_id, dev, autocast)
            history.append({"step": step, "heldout_diffusion_loss": e["diffusion_loss"],
                            "heldout_masked_accuracy": e["masked_accuracy"]})
            log(f"eval @ step {step}: held-out diffusion loss {e['diffusion_loss']:.4f}, masked acc "
                f"{e['masked_accuracy']:.4f}")
        if time.time() - last_ckpt > a.ckpt_every_s:
            save_ckpt(a.ckpt)
            last_ckpt = time.time()
    sync()
    train_s = time.time() - t_train0
    log(f"training stopped ({stop_reason}) at step {step}: {train_s:.0f} s, {tokens_seen / 1e6:.1f} M tokens")
    save_ckpt(a.ckpt)

    # --- export, reload, evaluate the exported weights, samples
    cfg = export(model, c, a.tokenizer, a.out)
    m2, check = reload_check(a.out, c, held_w[:2, :64].clone(), mask_id)
    log(f"export: {a.out} ({check['tensors']} tensors, {check['params'] / 1e6:.2f} M params, "
        f"{check['safetensors_bytes'] / 1e6:.1f} MB); reload ok; logits vs tools/reference/llada.py: "
        f"max |diff| {check['reference_logits_max_abs_diff']}")
    m2.to(dev)
    held = evaluate(m2, held_w, mask_id, dev, autocast)
    trn = evaluate(m2, train_w, mask_id, dev, autocast)
    log(f"held-out: diffusion loss {held['diffusion_loss']:.4f} nats/token, masked CE {held['masked_ce']:.4f}, "
        f"masked acc {held['masked_accuracy']:.4f}  | train windows: {trn['diffusion_loss']:.4f} / "
        f"{trn['masked_accuracy']:.4f}")
    if cuda:   # samples in true float32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sdev = dev if a.sample_device == "auto" else torch.device(a.sample_device)
    samples = run_samples(a.out, m2.to(sdev), tok, mask_id, bos, sdev, a.samples)

    metrics = {
        "model": {"config": {k: cfg[k] for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size",
                                                   "vocab_size", "embedding_size", "rope_theta",
                                                   "max_sequence_length", "mask_token_id", "bos_token_id",
                                                   "eos_token_id")},
                  "params": n_params, "non_embedding_params": n_params - n_emb,
                  "safetensors_bytes": check["safetensors_bytes"]},
        "data": {"corpus": os.path.relpath(a.corpus, ROOT), "corpus_sha256": train_c.sha256,
                 "corpus_bytes": train_c.n_bytes, "train_tokens": int(len(train_c.stream)),
                 "heldout": os.path.relpath(a.heldout, ROOT), "heldout_sha256": held_c.sha256,
                 "heldout_tokens": int(len(held_c.stream)),
                 "source": "King James Bible (Debian bible-kjv-text), public domain"},
        "training": {"steps": step, "planned_steps": total, "stop_reason": stop_reason, "batch_size": B,
                     "seq_len": L, "tokens_seen": tokens_seen,
                     "epochs": round(tokens_seen / len(train_c.stream), 1),
                     "train_seconds": round(train_time_prev + train_s, 1),
                     "tokens_per_second": round(tokens_seen / max(1e-9, train_time_prev + train_s)),
                     "final_train_loss": last_loss, "lr": a.lr, "min_lr_ratio": a.min_lr_ratio,
                     "warmup": a.warmup, "weight_decay": a.weight_decay, "dropout": a.dropout,
                     "random_length_prob": a.random_length_prob, "eps": a.eps, "seed": a.seed,
                     "resumed_from": a.resume},
        "eval_heldout": held, "eval_train_windows": trn, "eval_note":
            "exported bf16 weights; t_j = (j+0.5)/8 for every window, masks from torch.Generator seed 1234; "
            "diffusion_loss = mean over (window, t) of sum_masked CE / t / (L-1), nats per token (LLaDA's bound)",
        "export_check": check, "samples": samples, "history": history,
        "env": {"torch": torch.__version__, "python": platform.python_version(),
                "device": torch.cuda.get_device_name(dev) if cuda else platform.processor() or "cpu",
                "sdpa": HAS_SDPA, "compile": bool(a.compile)},
        "wall_seconds": round(time.time() - T_PROCESS, 1),
        "command": " ".join(sys.argv),
    }
    os.makedirs(os.path.dirname(os.path.abspath(metrics_path)), exist_ok=True)
    with open(metrics_path, "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    log(f"metrics: {metrics_path}; wall {metrics['wall_seconds']} s")
    if not check["ok"]:
        log(f"ERROR: export check failed: {check['error']}")
        sys.exit(2)


if __name__ == "__main__":
    main()
