"""Plot one step's activation memory over time: mosaic's plan beside the PyTorch reference.

    python3 tools/bench/plot_profile.py BENCH_DIR [--out FILE.png] [--title TEXT]

BENCH_DIR is one model's output of tools/bench/run_gpu_bench.sh:
  mosaic_profile.json  `mosaic bench --profile`: live bytes after each node of the planned
                       step, with each node's modeled cost (FLOPs + bytes): the x axis is
                       cumulative modeled cost, i.e. the step's time as the planner models it.
  torch_profile.json   bench_step.py --profile: the caching allocator's alloc/free trace of one
                       step (torch.cuda.memory._snapshot), weights subtracted.
Both x axes are normalised to the step (0 = start, 1 = end): the reference's trace runs
slower under recording, so its absolute times are not the step's. Also prints, for each, the
peak, the time-weighted average and their ratio. Needs matplotlib (not a CI dependency).
"""
from __future__ import annotations

import argparse
import json
import os

GIB = 2.0 ** 30


def mosaic_series(path):
    j = json.load(open(path))
    xs, ys, t = [0.0], [0.0], 0.0
    total = sum(n["modeled_cost"] for n in j["timeline"]) or 1.0
    for n in j["timeline"]:
        # A node holds its live bytes for its modeled duration: a step function.
        xs += [t / total, (t + n["modeled_cost"]) / total]
        ys += [n["live_bytes"] / GIB] * 2
        t += n["modeled_cost"]
    return j["L"], xs, ys


def torch_series(path):
    j = json.load(open(path))
    base = j["weights_and_resident_bytes"]
    t, a = j["time_ms"], j["allocated_bytes"]
    span = (t[-1] - t[0]) or 1.0
    xs, ys = [], []
    for i in range(len(t)):
        x = (t[i] - t[0]) / span
        if xs:  # hold the previous value until this event: a step function
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append((a[i] - base) / GIB)
    return j["L"], xs, ys


def peak_and_average(xs, ys):
    area = sum((xs[i + 1] - xs[i]) * ys[i] for i in range(len(xs) - 1))
    width = (xs[-1] - xs[0]) or 1.0
    avg = area / width
    return max(ys), avg, (max(ys) / avg if avg > 0 else float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--out", help="PNG path (default: DIR/memory_timeline.png)")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    Lm, mx, my = mosaic_series(os.path.join(a.dir, "mosaic_profile.json"))
    Lt, tx, ty = torch_series(os.path.join(a.dir, "torch_profile.json"))
    rows = []
    for name, L, xs, ys in (("mosaic (plan)", Lm, mx, my), ("PyTorch reference (allocator)", Lt, tx, ty)):
        pk, avg, ratio = peak_and_average(xs, ys)
        rows.append((name, L, pk, avg, ratio))
        print(f"{name:32s} L={L}: peak {pk:.2f} GiB, time-weighted average {avg:.2f} GiB, peak/avg {ratio:.2f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (name, L, pk, avg, ratio), (xs, ys), color in zip(
            axes, rows, ((mx, my), (tx, ty)), ("tab:blue", "tab:red")):
        ax.plot(xs, ys, color=color, lw=1.0)
        ax.fill_between(xs, ys, color=color, alpha=0.2)
        ax.axhline(avg, color="k", ls="--", lw=0.8)
        ax.set_title(f"{name}, L={L}\npeak {pk:.2f} GiB, average {avg:.2f} GiB, peak/avg {ratio:.2f}", fontsize=10)
        ax.set_xlabel("fraction of the step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("activation memory (GiB, weights excluded)")
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    out = a.out or os.path.join(a.dir, "memory_timeline.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
