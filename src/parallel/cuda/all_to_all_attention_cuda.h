#pragma once
// all_to_all_attention_cpu's schedule on a GPU: bf16 device buffers, the packing by strided
// copies on the stream, mosaic's flash kernels for the attention. Its buffers are allocated per
// call (the engine's form will take them from the step's memory plan).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "parallel/communicator.h"

namespace mosaic::parallel {

// This rank holds rows shard_rows(rows, size)[rank] of q [.., heads*hd], k and v [.., kv_heads*hd]
// (device, bf16); out: those rows of the attention over all rows (block > 0: block-causal at
// positions 0 .. rows-1). comm moves device buffers (NCCL, or a LocalGroup copying with
// cudaMemcpy); s: this rank's stream on its device.
void all_to_all_attention_cuda(Communicator& comm, const __nv_bfloat16* q, const __nv_bfloat16* k,
                               const __nv_bfloat16* v, int64_t rows, int heads, int kv_heads, int hd, float scale,
                               int64_t block, __nv_bfloat16* out, cudaStream_t s);

}  // namespace mosaic::parallel
