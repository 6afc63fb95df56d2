#!/usr/bin/env python3
"""Aggregate throughput and latency of `mosaic serve` under 1, 4, 16 ... concurrent clients.

Starts the server (or uses --url), then for each concurrency C runs C clients at once, each
sending --requests completions one after another (distinct prompts, greedy, --max-tokens
tokens, the diffusion options of --extra). Prints per C: requests, generated tokens, wall
seconds, aggregate tokens/s, its ratio to the first C, and p50/p99 request latency; --json
writes the rows.

    python3 tools/bench/serve_bench.py --mosaic build/bin/mosaic --backend cpu --clients 1,4,16 \
        --requests 2 --max-tokens 64 --extra '{"cache": "dual"}' --json out.json
"""
import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time

WORDS = ["And", "the", "LORD", "said", "unto", "Moses", "behold", "in", "the", "beginning", "God",
         "created", "heaven", "earth", "king", "people", "went", "up", "to", "Jerusalem"]


def prompt(i):
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8))


def post(host, port, body):
    conn = http.client.HTTPConnection(host, port, timeout=3600)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data}")
    return data


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (default: start one with --mosaic)")
    ap.add_argument("--mosaic", default="build/bin/mosaic")
    ap.add_argument("--model", default="", help="--model for the server it starts (default: the shipped one)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--server-args", default="", help="more flags for the server it starts")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--extra", default="{}", help="JSON of extra request fields (steps, cache, ...)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    proc = None
    if a.url:
        m = re.match(r"http://([^:/]+):(\d+)", a.url)
        host, port = m.group(1), int(m.group(2))
    else:
        cmd = [a.mosaic, "serve", "--port", "0", "-q", "--backend", a.backend, "--max-batch", str(max(clients)),
               "--queue", str(max(clients))]
        if a.model:
            cmd += ["--model", a.model]
        cmd += a.server_args.split()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)", line)
        if not m:
            sys.exit(f"serve_bench: the server did not start: {line!r}")
        host, port = m.group(1), int(m.group(2))
    extra = json.loads(a.extra)
    conn = http.client.HTTPConnection(host, port)
    conn.request("GET", "/v1/models")
    model = json.loads(conn.getresponse().read())["data"][0]["id"]
    conn.close()
    post(host, port, {"model": model, "prompt": prompt(0), "max_tokens": a.max_tokens, **extra})  # warm up

    rows = []
    print(f"{'clients':>7} {'requests':>8} {'tokens':>7} {'wall s':>8} {'tokens/s':>9} {'vs ' + str(clients[0]):>7} "
          f"{'p50 s':>7} {'p99 s':>7}")
    for c in clients:
        latencies, tokens, errors = [], [0], []
        lock = threading.Lock()

        def client(k):
            for j in range(a.requests):
                t0 = time.perf_counter()
                try:
                    r = post(host, port, {"model": model, "prompt": prompt(k * a.requests + j),
                                          "max_tokens": a.max_tokens, **extra})
                except Exception as e:  # reported, not hidden
                    with lock:
                        errors.append(str(e))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    tokens[0] += r["usage"]["completion_tokens"]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        row = {"clients": c, "requests": len(latencies), "errors": errors, "tokens": tokens[0], "wall_s": wall,
               "tokens_per_s": tokens[0] / wall, "p50_s": statistics.median(latencies) if latencies else None,
               "p99_s": percentile(latencies, 0.99) if latencies else None,
               "max_tokens": a.max_tokens, "extra": extra}
        rows.append(row)
        print(f"{c:>7} {len(latencies):>8} {tokens[0]:>7} {wall:>8.2f} {row['tokens_per_s']:>9.1f} "
              f"{row['tokens_per_s'] / rows[0]['tokens_per_s']:>6.2f}x {row['p50_s']:>7.2f} {row['p99_s']:>7.2f}"
              + (f"  {len(errors)} errors: {errors[0]}" if errors else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": model, "rows": rows}, f, indent=2)
    if proc:
        proc.terminate()
        proc.wait(60)
    sys.exit(1 if any(r["errors"] for r in rows) else 0)


if __name__ == "__main__":
    main()
