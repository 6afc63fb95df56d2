#pragma once
// How one step's work is cut across n ranks (issue 17): the sequence's rows into contiguous
// shards, and for the all-to-all attention (Ulysses-style) the heads into groups.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mosaic::parallel {

struct Shard {
  int64_t begin = 0, count = 0;
  int64_t end() const { return begin + count; }
};

// Rows [0, rows) in n contiguous shards in rank order, as even as possible (the first rows % n
// shards one row longer).
std::vector<Shard> shard_rows(int64_t rows, int n);

// The shard that holds `row` (it must be in one).
size_t shard_of(const std::vector<Shard>& shards, int64_t row);

// Query heads and key/value heads in n groups, group r of each on rank r: both counts must
// divide by n, so that every query head's key/value head lands on its rank (GQA keeps its ratio).
struct HeadGroups {
  std::vector<Shard> heads, kv_heads;
};
HeadGroups shard_heads(int heads, int kv_heads, int n);

}  // namespace mosaic::parallel
