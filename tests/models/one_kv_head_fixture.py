"""A copy of a LLaDA fixture with one key/value head: every query head reads the first key/value
head's rows of k_proj and v_proj (multi-query attention), for the all-to-all exchange's case of
several query heads per rank on a key/value head that ranks share.

    python3 one_kv_head_fixture.py SRC_DIR DST_DIR
"""
import json
import os
import shutil
import struct
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    config = json.load(open(os.path.join(src, "config.json")))
    head_dim = config["d_model"] // config["n_heads"]
    config["n_kv_heads"] = 1
    json.dump(config, open(os.path.join(dst, "config.json"), "w"), indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), dst)

    # safetensors: u64 header length, JSON header, then the tensors' bytes (row-major, so a
    # weight's first rows are its first bytes).
    raw = open(os.path.join(src, "model.safetensors"), "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out_header, out_data = {}, bytearray()
    for name, t in header.items():
        if name == "__metadata__":
            out_header[name] = t
            continue
        begin, end = t["data_offsets"]
        blob = data[begin:end]
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            rows, cols = t["shape"]
            row_bytes = (end - begin) // rows
            t = dict(t, shape=[head_dim, cols])
            blob = blob[:head_dim * row_bytes]
        out_header[name] = dict(t, data_offsets=[len(out_data), len(out_data) + len(blob)])
        out_data += blob
    head = json.dumps(out_header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + out_data)


if __name__ == "__main__":
    main()
