#pragma once
// Attention over a sequence whose rows are sharded across a group's ranks, Ulysses-style: an
// all-to-all gives each rank every row of its group of heads, each rank attends there, and a
// second all-to-all returns each rank its own rows of every head. Its exchange schedule, run on
// the CPU reference kernel between LocalGroup threads (all_to_all_attention_cuda runs the same
// exchanges on the GPU). Not in the engine yet: its sharded step all-gathers the keys and values
// (models/sharded_step.cpp).
#include <cstdint>

#include "parallel/communicator.h"

namespace mosaic::parallel {

// This rank holds rows shard_rows(rows, size)[rank] of q [.., heads*hd] and k, v [.., kv_heads*hd]
// (fp32, host). out [its rows, heads*hd]: those rows of the attention over all `rows` keys
// (block > 0: block-causal at positions 0 .. rows-1), as one device computes it.
void all_to_all_attention_cpu(Communicator& comm, const float* q, const float* k, const float* v, int64_t rows,
                              int heads, int kv_heads, int hd, float scale, int64_t block, float* out);

}  // namespace mosaic::parallel
