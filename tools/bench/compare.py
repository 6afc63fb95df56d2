"""The ratio table of one benchmark directory (tools/bench/run_gpu_bench.sh's output):
mosaic vs the PyTorch reference sampler, measured in the same device call.

    python3 tools/bench/compare.py OUTDIR [--markdown]
"""
import json
import os
import sys

from tables import print_table


def load(d, name):
    p = os.path.join(d, name)
    return json.load(open(p)) if os.path.exists(p) else None


def gib(b):
    return f"{b / 2**30:.2f}" if b else "-"


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    mo, fl, to, mx = (load(d, n) for n in ("mosaic.json", "mosaic_flash.json", "torch.json", "mosaic_max.json"))
    rows = []
    tres = {r["tokens"]: r for r in (to or {}).get("results", [])}
    fres = {r["tokens"]: r for r in (fl or {}).get("results", [])}
    for r in (mo or {}).get("results", []):
        L = r["tokens"]
        t = tres.get(L, {})
        f = fres.get(L, {})
        tm = t.get("ms_per_step")
        mm = r.get("ms_per_step")
        rows.append([L, f"{mm:.1f}" if mm else r.get("error", "-")[:40], f"{f['ms_per_step']:.1f}" if f.get("ms_per_step") else "-",
                     f"{tm:.1f}" if tm else t.get("status", "-"), f"{mm / tm:.3f}" if mm and tm else "-",
                     f"{r.get('tflops', 0):.0f}", gib(r.get("device_peak_bytes")), gib(t.get("peak_mem_bytes")),
                     gib(r.get("arena_bytes")), f"{r['peak_live_bytes'] / r['avg_live_bytes']:.3f}" if r.get("avg_live_bytes") else "-"])
    head = ["tokens", "mosaic ms (cuDNN)", "mosaic ms (flash)", "PyTorch ms", "ratio", "TFLOP/s", "mosaic device GiB",
            "PyTorch peak GiB", "arena GiB", "peak/avg"]
    print_table(head, rows, md)
    if to:
        print(f"\nPyTorch reference: max tokens that run: {to.get('max_tokens')} (softmax {to['settings']['softmax_dtype']}, "
              f"weights {gib(to.get('weights_bytes'))} GiB, torch {to.get('torch')})")
    if mx:
        print(f"mosaic: plan-based max tokens: {mx.get('max_tokens_planned')} (activation budget "
              f"{gib(mx.get('activation_budget'))} GiB)")
        for r in mx.get("results", []):
            status = "ran" if "ms_per_step" in r else "FAILED: " + r.get("error", "")
            print(f"  confirmed: L={r['tokens']} through {mx.get('layers_run')} of {mx.get('n_layers')} layers: {status}"
                  + (f", {r['ms_per_step']:.0f} ms, device peak {gib(r.get('device_peak_bytes'))} GiB, arena "
                     f"{gib(r.get('arena_bytes'))} GiB, peak/avg {r['peak_live_bytes'] / r['avg_live_bytes']:.3f}"
                     if "ms_per_step" in r else ""))
        if to and to.get("max_tokens") and mx.get("max_tokens_planned"):
            print(f"  max length ratio mosaic/PyTorch: {mx['max_tokens_planned'] / to['max_tokens']:.1f}x")


if __name__ == "__main__":
    main()
