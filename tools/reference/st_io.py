"""Safetensors checkpoints as the official repos ship them: one model.safetensors, or
model-0000k-of-0000n.safetensors shards listed in model.safetensors.index.json."""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "f32": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "f64": torch.float64,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "f16": torch.float16,
}


def parse_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype '{name}': use one of float32, float64, bfloat16, float16") from None


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: no config.json")
    with open(path) as f:
        return json.load(f)


def weight_files(model_dir: str) -> Dict[str, str]:
    """tensor name -> file path."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    from safetensors import safe_open

    if os.path.isfile(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        return {k: os.path.join(model_dir, v) for k, v in wm.items()}
    if os.path.isfile(single):
        with safe_open(single, framework="pt") as f:
            return {k: single for k in f.keys()}
    raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")


def load_tensors(model_dir: str, dtype=None, device="cpu") -> Dict[str, torch.Tensor]:
    """All tensors of a checkpoint, converted to `dtype` (None keeps the stored dtype), on `device`."""
    from safetensors import safe_open

    files = weight_files(model_dir)
    by_file: Dict[str, List[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    out: Dict[str, torch.Tensor] = {}
    dt = parse_dtype(dtype) if dtype is not None else None
    for path, names in by_file.items():
        with safe_open(path, framework="pt") as f:
            for n in names:
                t = f.get_tensor(n)
                if dt is not None:
                    t = t.to(dt)
                out[n] = t.to(device)
    return out


def shard_plan(specs: List[Tuple[str, Tuple[int, ...], torch.dtype]], shard_bytes: int) -> List[List[int]]:
    """Greedy split of tensors (in order) into shards of at most shard_bytes (a tensor larger
    than shard_bytes gets a shard of its own)."""
    shards: List[List[int]] = [[]]
    size = 0
    for i, (_, shape, dt) in enumerate(specs):
        n = torch.tensor([], dtype=dt).element_size()
        for s in shape:
            n *= s
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += n
    return shards


def write_checkpoint(out_dir: str, specs: List[Tuple[str, Tuple[int, ...], torch.dtype]],
                     make: Callable[[int], torch.Tensor], shard_bytes: int, log=print) -> List[str]:
    """Writes tensors shard by shard: make(i) builds tensor i (any device); only one shard is
    held in host memory at a time. One shard -> model.safetensors; more ->
    model-0000k-of-0000n.safetensors + model.safetensors.index.json."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    plan = shard_plan(specs, shard_bytes)
    n = len(plan)
    weight_map: Dict[str, str] = {}
    total = 0
    written = []
    for k, idx in enumerate(plan):
        fname = "model.safetensors" if n == 1 else f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        tensors = {}
        for i in idx:
            name, shape, dt = specs[i]
            t = make(i)
            assert tuple(t.shape) == tuple(shape) and t.dtype == dt, (name, t.shape, t.dtype)
            tensors[name] = t.detach().to("cpu").contiguous()
            total += tensors[name].numel() * tensors[name].element_size()
            weight_map[name] = fname
        save_file(tensors, os.path.join(out_dir, fname), metadata={"format": "pt"})
        written.append(fname)
        if log:
            log(f"  wrote {fname} ({len(idx)} tensors)")
        del tensors
    stale = [os.path.join(out_dir, f) for f in os.listdir(out_dir)
             if f.endswith(".safetensors") and f not in written]
    for f in stale:
        os.remove(f)
    index = os.path.join(out_dir, "model.safetensors.index.json")
    if n > 1:
        with open(index, "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    elif os.path.exists(index):
        os.remove(index)
    return written
