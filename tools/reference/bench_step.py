"""Time one denoising step of the reference (official-code) sampler on a GPU.

    python3 tools/reference/bench_step.py --preset llada-8b --tokens 4096,16384,28672
    python3 tools/reference/bench_step.py --model /path/to/LLaDA-8B-Instruct --max-tokens
    python3 tools/reference/bench_step.py --preset dream-7b --tokens 8192 --max-tokens --json out.json

x = a random prompt + --gen (256) mask tokens; L = --tokens is the total length. One step is
the body of the official loop, on the model in bf16 (--dtype):

  LLaDA (ML-GSAI/LLaDA generate.py, first block of --block (32) tokens):
      logits = model(x).logits                      [1, L, 126464] bf16 (x2 batch with --cfg-scale)
      x0 = argmax(add_gumbel_noise(logits, T))      T > 0: float64 exp / (-log rand_like)^T
      p = softmax(logits)                           model dtype = the current official code;
                                                    --softmax-dtype float64 = the code before
                                                    2025-06-02, softmax(logits.to(float64))
      x0_p = gather(p, x0); x0_p[block_end:] = -inf; confidence = where(mask, x0_p, -inf)
      topk(confidence, k); x[transfer] = x0[transfer]
  Dream (generation_utils.py _sample, alg --dream-alg, default entropy):
      logits = model(x).logits; logits = cat([logits[:, :1], logits[:, :-1]], 1)
      mask_logits = logits[mask_index]; sample_tokens (temperature, top_p, softmax,
      max or Categorical, -entropy); full_confidence; topk; x[...] = x0

Timing: --warmup runs, then the median of --iters runs timed with CUDA events. Memory:
torch.cuda.max_memory_allocated over the timed runs (weights included), reported with
the weights' own size. OOM (torch.cuda.OutOfMemoryError) is reported as "OOM" and the
next length is tried after emptying the cache.

--max-tokens: from the largest length that ran (or 4096), double until OOM, then bisect
to --granularity (256) tokens; reports the largest L that ran.

--preset builds random weights directly on the GPU (torch.empty + normal_, seconds for 8B);
--model loads a checkpoint directory (config.json + safetensors, single or sharded).
Results are printed as a table and written to --json (default bench_step.json).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_checkpoint  # noqa: E402
import st_io  # noqa: E402
from dream import Dream  # noqa: E402
from llada import LLaDA  # noqa: E402

OOM_ERRORS = (torch.cuda.OutOfMemoryError,) if hasattr(torch.cuda, "OutOfMemoryError") else ()


def is_oom(e: BaseException) -> bool:
    return isinstance(e, OOM_ERRORS) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


# ------------------------------------------------------------------ one step, as the official loops
def add_gumbel_noise(logits, temperature):
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


def llada_step(model, x, prompt_len, block_length, k, mask_id, temperature, cfg_scale, remasking,
               softmax_dtype, prompt_index):
    mask_index = x == mask_id
    if cfg_scale > 0.0:
        un_x = x.clone()
        un_x[prompt_index] = mask_id
        logits = model(torch.cat([x, un_x], dim=0))
        logits, un_logits = torch.chunk(logits, 2, dim=0)
        logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
    else:
        logits = model(x)
    logits_with_noise = add_gumbel_noise(logits, temperature=temperature)
    x0 = torch.argmax(logits_with_noise, dim=-1)
    if remasking == "low_confidence":
        p = F.softmax(logits.to(torch.float64) if softmax_dtype == "float64" else logits, dim=-1)
        x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
    else:
        x0_p = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
    x0_p[:, prompt_len + block_length:] = -np.inf
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, torch.tensor(-np.inf, device=x0_p.device, dtype=x0_p.dtype))
    transfer_index = torch.zeros_like(x0, dtype=torch.bool, device=x0.device)
    for j in range(confidence.shape[0]):
        _, select_index = torch.topk(confidence[j], k=k)
        transfer_index[j, select_index] = True
    x[transfer_index] = x0[transfer_index]
    return x


def top_p_logits(logits, top_p):
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative_probs > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = 0
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask = mask.scatter_(-1, sorted_indices, remove)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def dream_sample_tokens(logits, temperature, top_p, neg_entropy):
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_logits(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        try:
            x0 = torch.distributions.Categorical(probs=probs).sample()
            confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
        except Exception:
            confidence, x0 = probs.max(dim=-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if neg_entropy:
        log_probs = torch.log(probs + 1e-10)
        confidence = torch.sum(probs * log_probs, dim=-1)
    return confidence, x0


def dream_step(model, x, k, mask_id, temperature, top_p, alg):
    mask_index = x == mask_id
    logits = model(x, shift=False)
    logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    mask_logits = logits[mask_index]
    confidence, x0 = dream_sample_tokens(mask_logits, temperature, top_p, neg_entropy=(alg == "entropy"))
    full_confidence = torch.full_like(x, -torch.inf, device=x.device, dtype=logits.dtype)
    full_confidence[mask_index] = confidence.to(logits.dtype)
    if k > 0:
        _, transfer_index = torch.topk(full_confidence, k)
        x_ = torch.zeros_like(x, device=x.device, dtype=torch.long) + mask_id
        x_[mask_index] = x0.clone()
        row_indices = torch.arange(x.size(0), device=x.device).unsqueeze(1).expand_as(transfer_index)
        x[row_indices, transfer_index] = x_[row_indices, transfer_index]
    return x


# ------------------------------------------------------------------ harness
class Timer:
    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            self.a = torch.cuda.Event(enable_timing=True)
            self.b = torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.b.record()
            torch.cuda.synchronize()
            self.ms = self.a.elapsed_time(self.b)
        else:
            self.ms = (time.perf_counter() - self.t) * 1e3


def build_model(args, device, dtype):
    t0 = time.time()
    if args.model:
        cfg = st_io.read_config(args.model)
        tensors = st_io.load_tensors(args.model, dtype=dtype, device=device)
        src = args.model
    else:
        cfg = make_checkpoint.PRESETS[args.preset]()
        tensors = make_checkpoint.random_tensors(cfg, dtype, device=device, seed=args.seed)
        src = f"preset {args.preset} (random weights)"
    arch = make_checkpoint.arch_of(cfg)
    model = LLaDA(cfg, tensors) if arch == "llada" else Dream(cfg, tensors)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    return model, cfg, arch, src, wbytes, time.time() - t0


def run_length(model, arch, cfg, L, args, device, timed=True):
    """Returns dict with status ok/OOM, times, peak memory."""
    mask_id = model.mask_token_id
    vocab = int(cfg.get("vocab_size"))
    gen = min(args.gen, L - 1)
    P = L - gen
    g = torch.Generator(device=device)
    g.manual_seed(1234 + L)
    res = {"tokens": L, "prompt": P, "gen": gen}
    x0 = None
    try:
        prompt = torch.randint(0, vocab - 1, (1, P), device=device, generator=g)
        prompt[prompt == mask_id] = mask_id - 1
        x0 = torch.full((1, L), mask_id, dtype=torch.long, device=device)
        x0[:, :P] = prompt
        prompt_index = x0 != mask_id
        block = min(args.block, gen)
        k = max(1, block // max(1, args.steps_per_block))   # tokens per step, as a 32-step block schedule

        def step():
            x = x0.clone()
            if arch == "llada":
                return llada_step(model, x, P, block, k, mask_id, args.temperature, args.cfg_scale,
                                  args.remasking, args.softmax_dtype, prompt_index)
            return dream_step(model, x, k, mask_id, args.temperature, args.top_p, args.dream_alg)

        for _ in range(args.warmup if timed else 1):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.iters if timed else 0):
            with Timer(device.type == "cuda") as t:
                step()
            times.append(t.ms)
        if getattr(args, "profile", None) and timed and device.type == "cuda" and not getattr(args, "_profiled", False):
            args._profiled = True
            write_memory_timeline(step, args.profile, L)
        res["status"] = "ok"
        if times:
            res["ms_per_step"] = statistics.median(times)
            res["ms_all"] = [round(v, 3) for v in times]
        if device.type == "cuda":
            res["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        res["status"] = "OOM"
    x0 = None
    if res["status"] == "OOM":
        # Outside the except block so the exception's frames (holding tensors) are gone.
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return res


def write_memory_timeline(step, path, L):
    """Allocated bytes over the real time of one step, from the caching allocator's own event
    trace (torch.cuda.memory._record_memory_history): every alloc and free, timestamped."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=1_000_000)
    t0 = time.time()
    step()
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    events = [e for e in snap["device_traces"][0] if e["action"] in ("alloc", "free_completed")]
    cur, t, a = base, [], []
    start = events[0]["time_us"] if events else 0
    for e in events:
        cur += e["size"] if e["action"] == "alloc" else -e["size"]
        t.append((e["time_us"] - start) / 1000.0)
        a.append(cur)
    with open(path, "w") as f:
        json.dump({"L": L, "source": "torch.cuda.memory._snapshot device_traces", "weights_and_resident_bytes": base,
                   "time_ms": t, "allocated_bytes": a, "wall_ms": (time.time() - t0) * 1000.0}, f)
    print(f"  memory timeline of one step at L={L}: {len(t)} events, peak {max(a) / 2**30:.2f} GiB -> {path}")


def search_max(model, arch, cfg, args, device, start_ok):
    gran = args.granularity
    probes = []

    def ok(L):
        r = run_length(model, arch, cfg, L, args, device, timed=False)
        probes.append({"tokens": L, "status": r["status"], "peak_mem_bytes": r.get("peak_mem_bytes")})
        print(f"  probe L={L}: {r['status']}", flush=True)
        return r["status"] == "ok"

    lo = start_ok or 0
    hi = None
    L = max(start_ok or 4096, gran)
    if not start_ok:
        if ok(L):
            lo = L
        else:
            hi = L
            lo = 0
    while hi is None:
        L = lo * 2
        if L > args.max_cap:
            return lo, probes
        if ok(L):
            lo = L
        else:
            hi = L
    while hi - lo > gran:
        mid = (lo + hi) // 2 // gran * gran
        if mid <= lo:
            break
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint directory")
    src.add_argument("--preset", choices=sorted(make_checkpoint.PRESETS))
    ap.add_argument("--tokens", default="4096,16384", help="comma-separated total lengths L")
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--steps-per-block", type=int, default=32, help="k = block / steps_per_block tokens per step")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--cfg-scale", type=float, default=0.0)
    ap.add_argument("--remasking", default="low_confidence", choices=["low_confidence", "random"])
    ap.add_argument("--softmax-dtype", default="model", choices=["model", "float64"])
    ap.add_argument("--dream-alg", default="entropy", choices=["entropy", "maskgit_plus"])
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--max-tokens", action="store_true", help="search the largest L that runs")
    ap.add_argument("--granularity", type=int, default=256)
    ap.add_argument("--max-cap", type=int, default=1 << 20)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench_step.json")
    ap.add_argument("--profile", help="write the first length's allocated-bytes timeline (JSON) here")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available (use --device cpu for a smoke test)")
    dtype = st_io.parse_dtype(args.dtype)
    torch.manual_seed(args.seed)
    model, cfg, arch, src, wbytes, build_s = build_model(args, device, dtype)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{arch} from {src}: weights {wbytes / 2**30:.2f} GiB, built in {build_s:.1f} s on {dev_name}")

    results = []
    for L in [int(t) for t in args.tokens.split(",") if t.strip()]:
        r = run_length(model, arch, cfg, L, args, device)
        results.append(r)
        ms = f"{r['ms_per_step']:.1f}" if "ms_per_step" in r else "-"
        mem = f"{r['peak_mem_bytes'] / 2**30:.2f}" if r.get("peak_mem_bytes") else "-"
        print(f"  L={L}: {r['status']} ms/step {ms} peak GiB {mem}", flush=True)

    max_tokens, probes = None, []
    if args.max_tokens:
        oks = [r["tokens"] for r in results if r["status"] == "ok"]
        max_tokens, probes = search_max(model, arch, cfg, args, device, max(oks) if oks else None)
        print(f"  largest L that runs: {max_tokens} (granularity {args.granularity})")

    out = {
        "tool": "tools/reference/bench_step.py",
        "device": dev_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "sdpa": hasattr(F, "scaled_dot_product_attention"),
        "arch": arch,
        "model": src,
        "dtype": str(dtype).replace("torch.", ""),
        "weights_bytes": wbytes,
        "build_seconds": round(build_s, 2),
        "settings": {k: getattr(args, k) for k in (
            "gen", "block", "steps_per_block", "temperature", "cfg_scale", "remasking", "softmax_dtype",
            "dream_alg", "top_p", "warmup", "iters", "granularity")},
        "results": results,
        "max_tokens": max_tokens,
        "max_tokens_probes": probes,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print()
    print(f"{'tokens':>8s} {'status':>6s} {'ms/step':>9s} {'peak GiB':>9s} {'act GiB':>8s}")
    for r in results:
        pm = r.get("peak_mem_bytes")
        print(f"{r['tokens']:8d} {r['status']:>6s} "
              f"{(('%.1f' % r['ms_per_step']) if 'ms_per_step' in r else '-'):>9s} "
              f"{(('%.2f' % (pm / 2**30)) if pm else '-'):>9s} "
              f"{(('%.2f' % ((pm - wbytes) / 2**30)) if pm else '-'):>8s}")
    if max_tokens is not None:
        print(f"max tokens: {max_tokens}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
