# The model-families change (issue 11) on the GPU: the GPU tests of the new binaries (Dream's
# goldens in cuda-fp32 among them), then LLaDA-8B's and Dream-7B's step latency, the new binary
# against the previous main's (3bf5816) in the same call on the same weights, with the PyTorch
# reference beside them. Two device calls: PART=tests_dream, then PART=llada.
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b && tar xJf .deps/bundle/prev.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
R=$OUT/run; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/env.txt 2>&1
if [ "${PART:-tests_dream}" = tests_dream ]; then
  # Run from another directory than the build's: the tests find their fixtures by themselves.
  (cd /tmp && timeout 200 /tmp/b/gpu/mosaic_gpu_tests --gtest_filter='-*Flash*' 2>&1 | grep -v "^\[ *OK\|^\[ RUN" | tail -80) > $R/gpu_tests.log
  tail -5 $R/gpu_tests.log
  export MOSAIC_LIBS=$LD_LIBRARY_PATH; unset LD_LIBRARY_PATH
  PREV_BIN=/tmp/b/prev/mosaic FLOORS="2048" LENGTHS=16384,4096 ITERS=5 \
    bash tools/bench/floor_sweep.sh dream-7b $R/dream /tmp/b/gpu/mosaic > $R/dream.log 2>&1
  tail -12 $R/dream.log
else
  export MOSAIC_LIBS=$LD_LIBRARY_PATH; unset LD_LIBRARY_PATH
  PREV_BIN=/tmp/b/prev/mosaic FLOORS="2048" LENGTHS=16384,4096 ITERS=5 \
    bash tools/bench/floor_sweep.sh llada-8b $R/llada /tmp/b/gpu/mosaic > $R/llada.log 2>&1
  tail -12 $R/llada.log
fi
cd $OUT && tar czf run.tgz run && rm -rf run
