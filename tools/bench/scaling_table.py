"""The scaling table of one tools/bench/run_multi_gpu_bench.sh directory: each step's time on N
ranks (per attention exchange) against one rank's in the same call, the speedup and the
efficiency (speedup / N), the arena each rank planned, and the longest step the ranks fit
(mosaic info's plan).

    python3 tools/bench/scaling_table.py OUTDIR [--markdown]
"""
import glob
import json
import os
import re
import sys

from tables import print_table


def runs(d):
    """{(tokens, layers_run): {(ranks, exchange): result}} from OUTDIR/ranks*.json."""
    table, devices = {}, {}
    for path in sorted(glob.glob(os.path.join(d, "ranks*.json"))):
        j = json.load(open(path))
        key = (j.get("gpus", 1), j.get("exchange", "-"))
        devices[key] = j.get("devices", [])
        for r in j.get("results", []):
            table.setdefault((r["tokens"], j.get("layers_run")), {})[key] = r
    return table, devices


def longest(d, n, exchange):
    p = os.path.join(d, f"info_ranks{n}.txt" if exchange == "-" else f"info_ranks{n}_{exchange}.txt")
    if not os.path.exists(p):
        return None
    m = re.search(r"largest L that fits with M=\d+(?: on \d+ GPUs)?: (\d+)", open(p).read())
    return int(m.group(1)) if m else None


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    table, devices = runs(d)
    rows = []
    for (tokens, layers), by_key in sorted(table.items()):
        base = by_key.get((1, "-"))
        for (n, ex), r in sorted(by_key.items()):
            if "error" in r:
                rows.append([tokens, layers, n, ex, "failed: " + r["error"][:60], "", "", ""])
                continue
            ms = r["ms_per_step"]
            speedup = base["ms_per_step"] / ms if base and "error" not in base else None
            rows.append([tokens, layers, n, ex, f"{ms:.1f}", f"{speedup:.2f}x" if speedup else "-",
                         f"{100 * speedup / n:.0f}%" if speedup else "-", f"{r['arena_bytes'] / 2**30:.2f}"])
    print_table(["tokens", "layers", "ranks", "exchange", "ms/step", "speedup", "efficiency", "arena GiB/rank"], rows,
                md, 14)
    print()
    for n, ex in sorted(devices):
        print(f"ranks {n} ({ex}): devices {devices[(n, ex)]}; longest step that fits (plan): {longest(d, n, ex)} tokens")


if __name__ == "__main__":
    main()
