# Run 6 (fourth session): the taming goal (peak/avg <= 1.15 at the largest floor of 8x/4x/2x/1x
# 2048 rows), rope with explicit roundings. "2048:0" = the same binary without the goal (tamed
# down to 2048 rows as before); "prev" = the third session's final binary. Same call, same weights.
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b && tar xJf .deps/bundle/prev.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu MOSAIC_SOURCE_DIR=$PWD
R=$OUT/run6; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/env.txt 2>&1
(timeout 150 /tmp/b/gpu/mosaic_gpu_tests --gtest_filter='-*Flash*' 2>&1 | grep -v "^\[ *OK\|^\[ RUN" | tail -60) > $R/gpu_tests.log
tail -4 $R/gpu_tests.log
export MOSAIC_LIBS=$LD_LIBRARY_PATH; unset LD_LIBRARY_PATH
OP_TIMES=1 PREV_BIN=/tmp/b/prev/mosaic_prev FLOORS="2048 2048:0" LENGTHS=16384,4096,32768 \
  bash tools/bench/floor_sweep.sh dream-7b $R/dream /tmp/b/gpu/mosaic > $R/dream.log 2>&1
tail -16 $R/dream.log
OP_TIMES=1 PREV_BIN=/tmp/b/prev/mosaic_prev FLOORS="2048 2048:0" LENGTHS=16384,4096,32768 CONFIRM=1048576 \
  bash tools/bench/floor_sweep.sh llada-8b $R/llada /tmp/b/gpu/mosaic > $R/llada.log 2>&1
tail -16 $R/llada.log
grep -A3 "tokens     M" $R/llada/../llada.log | tail -4
cd $OUT && tar czf run6.tgz run6 && rm -rf run6
