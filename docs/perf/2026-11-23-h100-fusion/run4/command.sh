set -u
mkdir -p /tmp/b && tar xJf .deps/bundle/gpu.tar.xz -C /tmp/b
L=/tmp/b/gpu/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
R=$OUT/run4; mkdir -p $R
TD=$(python3 -c "import os,nvidia.cudnn as c; print(os.path.join(list(c.__path__)[0],'lib'))" 2>/dev/null)
echo "torch cudnn: $TD" | tee $R/env.txt; ls $TD >> $R/env.txt 2>&1
ck=/tmp/ckpt-dream-7b
python3 tools/reference/make_checkpoint.py --preset dream-7b --out $ck --device cuda > $R/ckpt.log 2>&1
B=/tmp/b/gpu/mosaic
run() { name=$1; shift; echo "== $name"; env "$@" $B bench --model $ck --backend cuda --tokens 16384,32768 --iters 3 --op-times --json $R/$name.json > $R/$name.log 2>&1; grep -E "^ +(16384|32768) " $R/$name.log; grep -E "attention|gate->x|hidden->gate" $R/$name.log | head -6; }
run base LD_LIBRARY_PATH=$L MOSAIC_CUDNN_VERBOSE=1
run tune LD_LIBRARY_PATH=$L MOSAIC_GEMM_TUNE=1
run composite LD_LIBRARY_PATH=$L MOSAIC_CUDNN_SDPA=composite
run torchdnn LD_LIBRARY_PATH=$TD:$L MOSAIC_CUDNN_VERBOSE=1
run torchdnn_comp LD_LIBRARY_PATH=$TD:$L MOSAIC_CUDNN_SDPA=composite
grep -h "cuDNN .* attention plan\|=>" $R/base.log $R/torchdnn.log | sort | uniq -c | head -20
cd $OUT && tar czf run4.tgz run4 && rm -rf run4
