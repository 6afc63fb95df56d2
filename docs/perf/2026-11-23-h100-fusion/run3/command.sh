set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b && tar xJf .deps/bundle/prev.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu MOSAIC_SOURCE_DIR=$PWD
R=$OUT/run3; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/env.txt 2>&1
(timeout 150 /tmp/b/gpu/mosaic_gpu_tests --gtest_filter='-*Flash*' 2>&1 | tail -40) > $R/gpu_tests.log
tail -3 $R/gpu_tests.log
export MOSAIC_LIBS=$LD_LIBRARY_PATH; unset LD_LIBRARY_PATH
OP_TIMES=1 PREV_BIN=/tmp/b/prev/mosaic_prev FLOORS="2048 1024" LENGTHS=16384,4096,32768 bash tools/bench/floor_sweep.sh dream-7b $R/dream /tmp/b/gpu/mosaic > $R/dream.log 2>&1
tail -30 $R/dream.log
OP_TIMES=1 PREV_BIN=/tmp/b/prev/mosaic_prev FLOORS="2048 1024" LENGTHS=16384,4096,32768 bash tools/bench/floor_sweep.sh llada-8b $R/llada /tmp/b/gpu/mosaic > $R/llada.log 2>&1
tail -22 $R/llada.log
cd $OUT && tar czf run3.tgz run3 && rm -rf run3
