"""The scaling table of one tools/bench/run_multi_gpu_bench.sh directory: each step's time on N
ranks against one rank's in the same call, the speedup and the efficiency (speedup / N), the
arena each rank planned, and the longest step the ranks fit (mosaic info's plan).

    python3 tools/bench/scaling_table.py OUTDIR [--markdown]
"""
import glob
import json
import os
import re
import sys

from tables import print_table


def runs(d):
    """{(tokens, layers_run): {ranks: result}} from OUTDIR/ranks*.json."""
    table, devices = {}, {}
    for path in sorted(glob.glob(os.path.join(d, "ranks*.json"))):
        j = json.load(open(path))
        n = j.get("gpus", 1)
        devices[n] = j.get("devices", [])
        for r in j.get("results", []):
            table.setdefault((r["tokens"], j.get("layers_run")), {})[n] = r
    return table, devices


def longest(d, n):
    p = os.path.join(d, f"info_ranks{n}.txt")
    if not os.path.exists(p):
        return None
    m = re.search(r"largest L that fits with M=\d+(?: on \d+ GPUs)?: (\d+)", open(p).read())
    return int(m.group(1)) if m else None


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    table, devices = runs(d)
    rows = []
    for (tokens, layers), by_n in sorted(table.items()):
        base = by_n.get(1)
        for n, r in sorted(by_n.items()):
            if "error" in r:
                rows.append([tokens, layers, n, "failed: " + r["error"][:60], "", "", ""])
                continue
            ms = r["ms_per_step"]
            speedup = base["ms_per_step"] / ms if base and "error" not in base else None
            rows.append([tokens, layers, n, f"{ms:.1f}", f"{speedup:.2f}x" if speedup else "-",
                         f"{100 * speedup / n:.0f}%" if speedup else "-", f"{r['arena_bytes'] / 2**30:.2f}"])
    print_table(["tokens", "layers", "ranks", "ms/step", "speedup", "efficiency", "arena GiB/rank"], rows, md, 14)
    print()
    for n in sorted(devices):
        print(f"ranks {n}: devices {devices[n]}; longest step that fits (plan): {longest(d, n)} tokens")


if __name__ == "__main__":
    main()
