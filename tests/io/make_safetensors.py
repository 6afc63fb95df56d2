#!/usr/bin/env python3
"""Independent oracle for the safetensors loader tests.

Writes checkpoints with pip's safetensors (not with mosaic's code) and prints on stdout a
JSON description of what it wrote: every tensor's dtype, shape, file and values, and the
metadata. The C++ test loads the files and compares against this description.

  make_safetensors.py single  OUT_DIR   -> OUT_DIR/model.safetensors
  make_safetensors.py sharded OUT_DIR   -> 2 shards + model.safetensors.index.json
  make_safetensors.py read FILE         -> prints FILE's tensors (F32/I32 only) as read by pip's
                                           safetensors: checks mosaic's writer

Only safetensors + numpy are needed (CI installs no torch, no ml_dtypes). numpy has no
bfloat16, so BF16 tensors are saved as their uint16 bit patterns and the header's dtype is
then rewritten from U16 to BF16: the data layout is still safetensors' own.
"""
import json
import os
import struct
import sys

import numpy as np
import safetensors.numpy


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns, round to nearest even (finite inputs)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def make_tensors(rng):
    """name -> (safetensors dtype, array to save, values the loader must return)."""
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    f16 = np.array([0.5, -1.25, 65504.0, 6e-8, -0.0, 3.14159], dtype=np.float16)
    bf16 = to_bf16_bits(rng.standard_normal((2, 3)).astype(np.float32) * 100)
    i64 = np.array([0, -1, 2**40, 126336], dtype=np.int64)
    return {
        "model.layers.0.attn.q.weight": ("F32", f32, f32),
        "model.layers.0.norm.weight": ("F16", f16, f16),
        "model.embed.weight": ("BF16", bf16, bf16_bits_to_f32(bf16)),
        "model.ids": ("I64", i64, i64),
        "model.empty": ("F32", np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3))),
        "model.scalar": ("F32", np.array(2.5, dtype=np.float32), np.array(2.5)),
    }


def save(path, tensors, metadata):
    """Saves with safetensors, then relabels the BF16 tensors' U16 dtype in the header."""
    raw = safetensors.numpy.save({k: v[1] for k, v in tensors.items()}, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    for name, (dtype, _, _) in tensors.items():
        if dtype == "BF16":
            assert header[name]["dtype"] == "U16"
            header[name]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-aligned, as safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def describe(tensors, file_of, metadata):
    return {
        "metadata": metadata,
        "tensors": {
            name: {
                "dtype": dtype,
                "shape": list(arr.shape),
                "file": file_of[name],
                "values": np.asarray(vals).reshape(-1).tolist(),
            }
            for name, (dtype, arr, vals) in tensors.items()
        },
    }


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "read":
        loaded = safetensors.numpy.load_file(out)
        print(json.dumps({k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.ravel().tolist()}
                          for k, v in loaded.items()}))
        return
    os.makedirs(out, exist_ok=True)
    tensors = make_tensors(np.random.default_rng(0))
    metadata = {"format": "pt", "note": "written by make_safetensors.py"}
    if mode == "single":
        save(os.path.join(out, "model.safetensors"), tensors, metadata)
        file_of = {k: "model.safetensors" for k in tensors}
    elif mode == "sharded":
        names = sorted(tensors)
        file_of = {k: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, k in enumerate(names)}
        for shard in sorted(set(file_of.values())):
            save(os.path.join(out, shard), {k: tensors[k] for k in names if file_of[k] == shard},
                 metadata)
        total = sum(v[1].nbytes for v in tensors.values())
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": file_of}, f, indent=2)
    else:
        sys.exit(f"unknown mode {mode!r}")
    print(json.dumps(describe(tensors, file_of, metadata)))


if __name__ == "__main__":
    main()
