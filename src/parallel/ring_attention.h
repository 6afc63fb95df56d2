#pragma once
// Attention over a sequence whose rows are sharded across a group's ranks, ring-style: each rank
// keeps its queries and passes its keys and values around the ring, one hop per step, folding
// each visiting block into its rows' running softmax (log-sum-exp merge), so that no rank ever
// holds more than two blocks of keys. The exchange schedule on the CPU between LocalGroup threads,
// tested against one device's attention; not in the engine yet (its sharded step all-gathers
// the keys and values, models/sharded_step.cpp). A GPU form would overlap each hop's NCCL
// send/recv with the previous block's compute.
#include <cstdint>

#include "parallel/communicator.h"

namespace mosaic::parallel {

// As all_to_all_attention_cpu: this rank holds rows shard_rows(rows, size)[rank] of q, k, v
// (fp32, host); out: those rows of the attention over all rows (block > 0: block-causal at
// positions 0 .. rows-1). Equal to one device's up to the order of the softmax sums.
void ring_attention_cpu(Communicator& comm, const float* q, const float* k, const float* v, int64_t rows, int heads,
                        int kv_heads, int hd, float scale, int64_t block, float* out);

}  // namespace mosaic::parallel
