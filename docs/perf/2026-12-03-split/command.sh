# The sparse cache without the block's rows, and split-KV attention for cached steps (issue 12), on the
# GPU, in device calls of at most 10 minutes:
#   PART=llada: the GPU tests (all but the flash kernel's timed cases; with the split kernel's tests and
#     its timings at cached-step shapes), LLaDA-8B whole generations (prompt 4k, gen 256, blocks of 32,
#     one token per step) for none/prefix/dual/sparse with the default attention (split-KV for cached
#     steps) and prefix/dual with MOSAIC_ATTENTION=cudnn (the one-pass path they took before), the lean
#     PyTorch Fast-dLLM dual cache (tools/reference/bench_generate.py) on the same random bf16 weights,
#     then a 131k-token prompt in dual and sparse mode.
#   PART=dream: the same generations for Dream-7B.
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
LIBS=$LD_LIBRARY_PATH
R=$OUT/run; mkdir -p $R
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv > $R/env.txt 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" >> $R/env.txt 2>&1
git log --oneline -1 >> $R/env.txt 2>&1
stage() {  # stage SECONDS NAME CMD...
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s, at ${SECONDS}s)"
  timeout --kill-after=10 "$limit" "$@" > $R/$name.log 2>&1
  echo "== $name: rc=$? in $((SECONDS - t0)) s"
  tail -n "${TAIL:-14}" $R/$name.log
}
M=/tmp/b/gpu/mosaic
preset=${PART:-llada}; [ "$preset" = llada ] && preset=llada-8b || preset=dream-7b
ck=/tmp/ckpt-$preset
if [ "${PART:-llada}" = llada ]; then
  (cd /tmp && TAIL=30 stage 200 gpu_tests /tmp/b/gpu/mosaic_gpu_tests \
    --gtest_filter='-FlashAttention.Large*:FlashAttention.ListVariants')
fi
unset LD_LIBRARY_PATH
[ -f $ck/config.json ] || stage 150 checkpoint python3 tools/reference/make_checkpoint.py --preset $preset --out $ck --device cuda
stage 200 mosaic_gen env LD_LIBRARY_PATH=$LIBS $M bench --model $ck --backend cuda --tokens 4096 --gen-length 256 \
  --block-length 32 --cache none,prefix,dual,sparse --json $R/mosaic_gen.json
stage 120 mosaic_gen_cudnn env LD_LIBRARY_PATH=$LIBS MOSAIC_ATTENTION=cudnn $M bench --model $ck --backend cuda \
  --tokens 4096 --gen-length 256 --block-length 32 --cache prefix,dual --json $R/mosaic_gen_cudnn.json
stage 120 torch_gen python3 tools/reference/bench_generate.py --model $ck --tokens 4096 --gen 256 --block 32 \
  --cache dual --device cuda --json $R/torch_gen.json
if [ "${PART:-llada}" = llada ]; then
  TAIL=8 stage 150 mosaic_long env LD_LIBRARY_PATH=$LIBS $M bench --model $ck --backend cuda --tokens 131104 \
    --gen-length 32 --block-length 32 --cache dual,sparse --warmup-generations 0 --json $R/mosaic_long.json
fi
cd $OUT && tar czf run.tgz run && rm -rf run
