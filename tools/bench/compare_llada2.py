"""The summary of one LLaDA2.0-mini benchmark directory (tools/bench/run_llada2_bench.sh's output):
mosaic against the PyTorch peer of the official modeling code (tools/reference/bench_llada2.py),
measured in the same device call on the same random weights.

    python3 tools/bench/compare_llada2.py OUTDIR [--markdown]

Reads (each optional): mosaic.json (bench --tokens), torch.json (bench_llada2.py: steps, max tokens,
generation), torch_gen.json (a separate --generate run), mosaic_max.json (bench --max-tokens),
mosaic_gen.json (bench --cache none,prefix), mosaic_generate_prefix.json (generate --cache prefix
--format json on the same prompt: the full answer). Ratios are mosaic / peer for times (< 1: mosaic
faster) and mosaic / peer for lengths and tokens/s (> 1: mosaic ahead).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import print_table  # noqa: E402


def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except ValueError as e:
        print(f"({name}: not valid JSON: {e})")
        return None


def gib(b):
    return f"{b / 2**30:.2f}" if b else "-"


def f1(v, spec="%.1f"):
    return spec % v if isinstance(v, (int, float)) else "-"


def ratio(a, b, spec="%.3f"):
    return spec % (a / b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"


def agreement(a, b):
    """(equal positions over the common length, common length, first differing index or None)."""
    n = min(len(a), len(b))
    same = sum(x == y for x, y in zip(a[:n], b[:n]))
    first = next((i for i in range(n) if a[i] != b[i]), None)
    return same, n, first


def main():
    d = sys.argv[1]
    md = "--markdown" in sys.argv
    mo, to, tg, mx, mg, mp = (load(d, n) for n in ("mosaic.json", "torch.json", "torch_gen.json", "mosaic_max.json",
                                                   "mosaic_gen.json", "mosaic_generate_prefix.json"))

    # ---------------------------------------------------------------- step latency
    peer = {}
    for r in (to or {}).get("results", []):
        peer.setdefault(r["tokens"], {})[r["moe"].split(":")[0]] = r
    gimpl = (to or {}).get("grouped_impl", "?")
    rows = []
    lengths = [r["tokens"] for r in (mo or {}).get("results", [])] or sorted(peer)
    mres = {r["tokens"]: r for r in (mo or {}).get("results", [])}
    for L in lengths:
        m = mres.get(L, {})
        lp, gp = peer.get(L, {}).get("loop", {}), peer.get(L, {}).get("grouped", {})
        mm, lm, gm = m.get("ms_per_step"), lp.get("ms_per_step"), gp.get("ms_per_step")
        rows.append([L, f1(mm) if mm else (m.get("error", "-") or "-")[:30], f1(lm) if lm else lp.get("status", "-"),
                     f1(gm) if gm else gp.get("status", "-"), ratio(mm, lm), ratio(mm, gm),
                     gib(m.get("device_peak_bytes")), gib(lp.get("peak_mem_bytes")), gib(gp.get("peak_mem_bytes"))])
    if rows:
        print(f"One denoising step of the block ending at L (PyTorch: generate()'s loop body, block-causal bf16 "
              f"mask, SDPA, logits of every row; grouped = {gimpl})")
        print_table(["tokens", "mosaic ms", "loop ms", "grouped ms", "mosaic/loop", "mosaic/grouped",
                     "mosaic dev GiB", "loop peak GiB", "grouped peak GiB"], rows, md, width=15)
    if to:
        lg = to.get("loop_vs_grouped")
        print(f"PyTorch peer: weights {gib(to.get('weights_bytes'))} GiB (experts {gib(to.get('expert_weights_bytes'))} "
              f"GiB, one copy), torch {to.get('torch')}, SDPA kernels {to.get('sdpa_kernels')}"
              + (f"; loop vs grouped logits at L={lg['tokens']}: max diff {lg['max_abs_logit_diff_last_block']:.3g}, "
                 f"argmax agreement {lg['argmax_agreement_last_block']:.3f}" if lg else "")
              + ("" if to.get("complete", True) else "  [torch.json is from a run cut short]"))

    plain = load(d, "mosaic_plain.json")
    if plain and mo:
        for r in plain.get("results", []):
            g = mres.get(r["tokens"], {}).get("ms_per_step")
            if g and r.get("ms_per_step"):
                print(f"mosaic MoE forms at L={r['tokens']}: grouped kernels {g:.1f} ms, per-expert cuBLASLt "
                      f"(MOSAIC_MOE=plain) {r['ms_per_step']:.1f} ms: grouped/plain {g / r['ms_per_step']:.2f}")

    # ---------------------------------------------------------------- max length
    print()
    tmax = (to or {}).get("max_tokens")
    if tmax is not None:
        print(f"PyTorch peer ({to.get('max_tokens_variant')}): largest L whose step runs: {tmax}"
              + ("" if to.get("max_tokens_search_complete", True) else " (search cut by --max-seconds: a lower bound)"))
        ooms = [p for p in to.get("max_tokens_probes", []) if p["status"] != "ok"]
        if ooms:
            print("  OOM probes: " + ", ".join(f"{p['tokens']} ({p.get('oom_phase')})" for p in ooms))
    if mx:
        planned = mx.get("max_tokens_planned")
        print(f"mosaic: plan-based max tokens {planned} (activation budget {gib(mx.get('activation_budget'))} GiB)")
        for r in mx.get("results", []):
            status = "ran" if "ms_per_step" in r else "FAILED: " + str(r.get("error", ""))[:100]
            print(f"  confirmed: L={r['tokens']} through {mx.get('layers_run')} of {mx.get('n_layers')} layers: {status}"
                  + (f", {r['ms_per_step']:.0f} ms, device peak {gib(r.get('device_peak_bytes'))} GiB"
                     if "ms_per_step" in r else ""))
        if planned and tmax:
            print(f"  max length ratio mosaic / PyTorch: {planned / tmax:.1f}x planned")
        ran = [r["tokens"] for r in mx.get("results", []) if "ms_per_step" in r]
        if ran and tmax:
            print(f"  max length ratio mosaic / PyTorch: {max(ran) / tmax:.1f}x confirmed by a real step "
                  f"(through {mx.get('layers_run')} layers)")

    # ---------------------------------------------------------------- generation
    print()
    gens = list((to or {}).get("generation", [])) + list((tg or {}).get("generation", []))
    mgen = {r["cache"]: r for r in (mg or {}).get("results", [])}
    none, pre = mgen.get("none", {}), mgen.get("prefix", {})
    rows = []
    for name, r in (("mosaic none", none), ("mosaic prefix", pre)):
        if r:
            rows.append([name, f1(r.get("total_ms", 0) / 1000, "%.2f") if r.get("total_ms") else r.get("error", "-")[:30],
                         f1(r.get("tokens_per_s"), "%.2f"), sum(v.get("count", 0) for v in r.get("steps", {}).values())])
    for g in gens:
        rows.append([f"official {g['moe']}", f1(g.get("seconds"), "%.2f") if g.get("seconds") else g.get("status", "-"),
                     f1(g.get("tokens_per_s"), "%.2f"), g.get("forwards", "-")])
    if rows:
        ctx = (none or pre).get("tokens") or (gens[0]["gen_context"] if gens else "?")
        gl = (none or pre).get("gen_length") or (gens[0]["gen_length"] if gens else "?")
        bl = (none or pre).get("block_length") or (gens[0]["block_length"] if gens else "?")
        print(f"Whole generation at {ctx} tokens (gen {gl}, block {bl}, one token per step, temperature 0; "
              f"mosaic bench --cache none,prefix vs the official uncached generate())")
        print_table(["run", "seconds", "tokens/s", "forwards"], rows, md, width=15)
        tps_pre, tps_none = pre.get("tokens_per_s"), none.get("tokens_per_s")
        print(f"  mosaic prefix / mosaic none: {ratio(tps_pre, tps_none, '%.2fx')}")
        for g in gens:
            print(f"  mosaic prefix / official {g['moe']}: {ratio(tps_pre, g.get('tokens_per_s'), '%.2fx')};  "
                  f"mosaic none / official {g['moe']}: {ratio(tps_none, g.get('tokens_per_s'), '%.2fx')}")

    # ---------------------------------------------------------------- token agreement
    print()
    if pre and "agreement_with_first" in pre:
        print(f"Tokens: mosaic prefix vs mosaic none (mosaic's own count over the generated region): "
              f"{pre['agreement_with_first']:.3f}")
    for g in gens:
        if "generated" not in g:
            continue
        og, oa = g["generated"], g.get("answer", [])
        for name, r in (("none", none), ("prefix", pre)):
            head = r.get("output_head") if r else None
            if head:
                s, n, first = agreement(head, og)
                print(f"  mosaic {name} (bench output_head) vs official {g['moe']}: {s}/{n} of the first {n}"
                      + (f", first difference at {first}" if first is not None else ""))
        if mp and "output_tokens" in mp:
            s, n, first = agreement(mp["output_tokens"], oa)
            print(f"  mosaic prefix (generate, full answer, {len(mp['output_tokens'])} tokens) vs official {g['moe']} "
                  f"answer ({len(oa)} tokens): {s}/{n} equal"
                  + (f", first difference at generated position {first}" if first is not None else ", identical"))
            if pre.get("output_head"):
                s2, n2, _ = agreement(pre["output_head"], mp["output_tokens"])
                print(f"  (mosaic generate prefix vs mosaic bench prefix output_head: {s2}/{n2})")
        if g.get("prompt_has_eos"):
            print("  note: the prompt holds an eos token")


if __name__ == "__main__":
    main()
