"""The peak-taming table of one tools/bench/floor_sweep.sh directory: per floor and length,
mosaic's step time (and its ratio to the untamed step and to the same-run PyTorch reference;
"prev" is an older build at its default floor, when the sweep ran one),
arena and peak-to-average live memory.

    python3 tools/bench/floor_table.py OUTDIR [--markdown]
"""
import glob
import json
import os
import re
import sys

from tables import print_table


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    runs = {}
    for p in glob.glob(os.path.join(d, "floor_*.json")):
        m = re.search(r"floor_(\d+)(?:_t(.+))?\.json$", p)
        if not m:
            continue
        floor = int(m.group(1)) if m.group(2) is None else f"{m.group(1)}, target {m.group(2)}"
        runs[floor] = {r["tokens"]: r for r in json.load(open(p)).get("results", [])}
    prev_path = os.path.join(d, "prev.json")  # floor_sweep.sh PREV_BIN: an older build, its default floor
    if os.path.exists(prev_path):
        runs["prev"] = {r["tokens"]: r for r in json.load(open(prev_path)).get("results", [])}
    torch_path = os.path.join(d, "torch.json")
    torch = {r["tokens"]: r for r in json.load(open(torch_path)).get("results", [])} if os.path.exists(torch_path) else {}
    untamed = runs.get(0, {})
    head = ["floor", "tokens", "ms/step", "vs untamed", "vs PyTorch", "arena MiB", "peak/avg", "chunks"]
    rows = []
    def order(f):  # default-goal floors by size, then FLOOR:TARGET runs, then off, then prev
        return (f == "prev", f == 0, isinstance(f, str), -f if isinstance(f, int) else f)

    for floor in sorted(runs, key=order):
        for L, r in sorted(runs[floor].items()):
            ms = r.get("ms_per_step")
            base = untamed.get(L, {}).get("ms_per_step")
            tm = torch.get(L, {}).get("ms_per_step")
            rows.append([floor if floor else "0 (off)", L, f"{ms:.1f}" if ms else r.get("error", "-")[:30],
                         f"{ms / base:.3f}" if ms and base else "-", f"{ms / tm:.3f}" if ms and tm else "-",
                         f"{r['arena_bytes'] / 2**20:.0f}" if r.get("arena_bytes") else "-",
                         f"{r['peak_live_bytes'] / r['avg_live_bytes']:.3f}" if r.get("avg_live_bytes") else "-",
                         r.get("chunks", "-")])
    print_table(head, rows, md, width=12)
    for L, t in sorted(torch.items()):
        print(f"PyTorch reference L={L}: {t.get('ms_per_step', t.get('status'))} ms, peak "
              f"{t.get('peak_mem_bytes', 0) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
