#!/usr/bin/env bash
# The two device calls of the 2026-12-03 LLaDA2.0-mini benchmark (docs/PERFORMANCE.md), from the
# repo root on the GPU machine, the bundle of tools/bench/make_gpu_bundle.sh carried in .deps/bundle.
#
# Call 1 (the PyTorch peer; the script's mosaic stages found no binary: the bundle was not carried):
#   DEADLINE=575 bash tools/bench/run_llada2_bench.sh $OUT/llada2 /tmp/b/gpu/mosaic
# Call 2 (mosaic, on the checkpoint call 1 wrote; 30 s later, the machine still warm):
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
M="env LD_LIBRARY_PATH=/tmp/b/gpu/lib /tmp/b/gpu/mosaic"; CK=/tmp/ckpt-llada2-mini; O=$OUT/llada2; mkdir -p $O
timeout 100 $M bench --model $CK --backend cuda --tokens 4096,16384,32768 --json $O/mosaic.json
MOSAIC_MOE=plain timeout 60 $M bench --model $CK --backend cuda --tokens 4096 --iters 3 --json $O/mosaic_plain.json
timeout 100 $M bench --model $CK --backend cuda --cache none,prefix --tokens 4096 --gen-length 256 --block-length 32 \
  --json $O/mosaic_gen.json
python3 tools/reference/bench_llada2.py --preset llada2-mini --device cpu --gen-context 4096 --gen-length 256 \
  --dump-prompt $O/gen_prompt.txt
timeout 60 $M generate --model $CK --backend cuda --prompt-tokens "$(cat $O/gen_prompt.txt)" --gen-length 256 \
  --block-length 32 --steps 32 --threshold 1 --temperature 0 --cache prefix --format json -q > $O/mosaic_generate_prefix.json
timeout 200 $M bench --model $CK --backend cuda --max-tokens --confirm-tokens 1736704 --layers 2 --iters 1 --warmup 0 \
  --json $O/mosaic_max.json
python3 tools/bench/compare_llada2.py $O
