# Run 5 (fourth session): 16-byte rope with shared angles, RMSNorm with the row in registers.
# "prev" = the third session's final binary, run in the same call on the same weights.
set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b && tar xJf .deps/bundle/prev.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu MOSAIC_SOURCE_DIR=$PWD
R=$OUT/run5; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $R/env.txt 2>&1
(timeout 150 /tmp/b/gpu/mosaic_gpu_tests --gtest_filter='-*Flash*' 2>&1 | tail -40) > $R/gpu_tests.log
tail -3 $R/gpu_tests.log
L=$LD_LIBRARY_PATH
export MOSAIC_LIBS=$L; unset LD_LIBRARY_PATH
for m in dream-7b llada-8b; do
  OP_TIMES=1 PREV_BIN=/tmp/b/prev/mosaic_prev FLOORS="2048 4096" LENGTHS=16384,4096,32768 \
    bash tools/bench/floor_sweep.sh $m $R/$m /tmp/b/gpu/mosaic > $R/$m.log 2>&1
  tail -12 $R/$m.log
  # Same input, both builds: the hidden state after 3 layers at 16k (chunked regions) must be
  # the same bytes.
  for b in /tmp/b/gpu/mosaic /tmp/b/prev/mosaic_prev; do
    LD_LIBRARY_PATH=$L timeout 90 $b bench --model /tmp/ckpt-$m --backend cuda --tokens 16384 --iters 1 --warmup 0 \
      --segment 0:3 --hidden-out /tmp/h_$(basename $b).safetensors > /dev/null 2>&1
  done
  cmp /tmp/h_mosaic.safetensors /tmp/h_mosaic_prev.safetensors && echo "$m: hidden state after 3 layers identical" | tee -a $R/identity.txt \
    || echo "$m: hidden states DIFFER" | tee -a $R/identity.txt
  ls -la /tmp/h_*.safetensors >> $R/identity.txt; rm -f /tmp/h_*.safetensors
done
cd $OUT && tar czf run5.tgz run5 && rm -rf run5
