# The final binaries of the fourth session: the GPU tests (all but the flash kernel's), and
# one Dream-7B step at 16k to check the review mends changed nothing in a real step.
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu MOSAIC_SOURCE_DIR=$PWD
R=$OUT/final; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/env.txt 2>&1
timeout 150 /tmp/b/gpu/mosaic_gpu_tests --gtest_filter='-*Flash*' > $R/gpu_tests_full.log 2>&1
grep -E "^\[  (PASSED|FAILED)|^\[==========\]|FAILED" $R/gpu_tests_full.log | tee $R/gpu_tests.log
timeout 60 python3 tools/reference/make_checkpoint.py --preset dream-7b --out /tmp/ckpt --device cuda > /dev/null 2>&1
timeout 90 /tmp/b/gpu/mosaic bench --model /tmp/ckpt --backend cuda --tokens 16384 --iters 5 --json $R/dream_16k.json 2>&1 | tail -3 | tee $R/dream_16k.log
cd $OUT && tar czf final.tgz final && rm -rf final
