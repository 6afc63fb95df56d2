#!/usr/bin/env python3
"""Token agreement of LLaDA2.0 generations across backends and caches, on a real model.

Runs `mosaic generate` on every prompt with each configuration below and prints, per pair of
configurations, how many generated tokens agree (position by position) and how many whole
generations are identical. The first configuration is the reference (the CPU, fp32 math).

  python3 tools/bench/moe_agreement.py --mosaic build/bin/mosaic --model models/mosaic-moe-tiny \
      --prompts tools/train/data/heldout.txt --count 24 --gen-length 192

Prompts are the lines of --prompts with at least 40 characters, --lines-per-prompt of them joined
per prompt, cut to --prompt-chars characters, the first --count (the shipped model was trained on
256-token windows; long prompts test long contexts it never saw).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import time

# (name, flags, environment); cuda-plain runs the experts one by one with cuBLASLt instead of
# the grouped kernel (MOSAIC_MOE=plain); *-offload keep 16 routed experts per layer in GPU slots
# (TIDE, refresh interval auto) and run the others on the CPU. "all" runs the first six.
CONFIGS = [
    ("cpu/none", ["--backend", "cpu", "--cache", "none"]),
    ("cpu/prefix", ["--backend", "cpu", "--cache", "prefix"]),
    ("cuda-fp32/none", ["--backend", "cuda-fp32", "--cache", "none"]),
    ("cuda-fp32/prefix", ["--backend", "cuda-fp32", "--cache", "prefix"]),
    ("cuda/none", ["--backend", "cuda", "--cache", "none"]),
    ("cuda/prefix", ["--backend", "cuda", "--cache", "prefix"]),
    ("cuda-plain/prefix", ["--backend", "cuda", "--cache", "prefix"], {"MOSAIC_MOE": "plain"}),
    ("cuda-fp32-offload/prefix", ["--backend", "cuda-fp32", "--cache", "prefix", "--gpu-experts", "16"]),
    ("cuda-offload/prefix", ["--backend", "cuda", "--cache", "prefix", "--gpu-experts", "16"]),
]


def generate(args, prompt, flags, env):
    cmd = [args.mosaic, "generate", "--model", args.model, "--prompt", prompt,
           "--gen-length", str(args.gen_length), "--format", "json", "-q"] + flags
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if out.returncode != 0:
        sys.exit(f"moe_agreement: {' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)["output_tokens"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mosaic", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True, help="a text file, one prompt per line")
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--prompt-chars", type=int, default=300)
    p.add_argument("--lines-per-prompt", type=int, default=1, help="consecutive lines joined into one prompt (long contexts)")
    p.add_argument("--gen-length", type=int, default=192)
    p.add_argument("--configs", default="all", help="comma-separated names from CONFIGS above, or all")
    args = p.parse_args()

    configs = [(c[0], c[1], c[2] if len(c) > 2 else {}) for c in CONFIGS]
    if args.configs == "all":
        configs = configs[:6]
    else:
        configs = [c for c in configs if c[0] in args.configs.split(",")]
    with open(args.prompts, encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.strip()) >= 40]
    k = args.lines_per_prompt
    prompts = ["\n".join(lines[i:i + k])[: args.prompt_chars] for i in range(0, len(lines), k)][: args.count]

    tokens = {name: [] for name, _, _ in configs}
    seconds = {name: 0.0 for name, _, _ in configs}
    for i, prompt in enumerate(prompts):
        for name, flags, env in configs:
            start = time.perf_counter()
            tokens[name].append(generate(args, prompt, flags, env))
            seconds[name] += time.perf_counter() - start
        print(f"prompt {i + 1}/{len(prompts)} done; seconds so far: "
              + ", ".join(f"{n} {t:.1f}" for n, t in seconds.items()), file=sys.stderr, flush=True)

    print(f"model {args.model}, {len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} characters, "
          f"gen-length {args.gen_length}, LLaDA2.0 generate() defaults")
    print("| a | b | tokens equal | generations identical |")
    print("|---|---|---|---|")
    for (a, _, _), (b, _, _) in itertools.combinations(configs, 2):
        same = total = whole = 0
        for ta, tb in zip(tokens[a], tokens[b]):
            n = min(len(ta), len(tb))
            same += sum(x == y for x, y in zip(ta[:n], tb[:n]))
            total += max(len(ta), len(tb))
            whole += ta == tb
        print(f"| {a} | {b} | {same}/{total} ({same / total:.4f}) | {whole}/{len(prompts)} |")


if __name__ == "__main__":
    main()
