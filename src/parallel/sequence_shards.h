#pragma once
// How one step's work is cut across n ranks (issue 17): the sequence's rows into contiguous
// shards, and for the all-to-all attention (Ulysses-style) the heads into groups.
#include <cstddef>
#include <cstdint>
#include <string>
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

// Query heads and key/value heads in n groups, group r of each on rank r, so that every query
// head's key/value head lands on its rank: the query heads must divide by n, and the key/value
// heads too, or n by them (then each rank gets one key/value head, and several ranks the same).
struct HeadGroups {
  std::vector<Shard> heads, kv_heads;
};
bool heads_split(int heads, int kv_heads, int n);
HeadGroups shard_heads(int heads, int kv_heads, int n);

// How a sharded step's ranks meet in each layer's attention.
enum class Exchange : uint8_t {
  Auto,       // the one whose exchanged tensors are smaller (exchange_heads_per_row)
  AllGather,  // every rank gathers every rank's keys and values and attends with its own queries
  // Ulysses: an all-to-all hands each rank every row of its group of heads (queries, keys and
  // values); it attends there, and a second all-to-all returns each rank its rows of every head.
  AllToAll,
};
const char* exchange_name(Exchange e);  // "auto", "all-gather", "all-to-all"
Exchange parse_exchange(const std::string& name);  // errors name --exchange
// What each rank holds (and about what it moves) per row of the sequence, in heads: the
// all-gather every key/value head's k and v (2 kv_heads); the all-to-all its group's q, k, v and
// attention output (2 heads / n + 2 per-rank key/value heads); -1 where the heads do not split.
int exchange_heads_per_row(Exchange e, int heads, int kv_heads, int n);
// The exchange a step of `n` ranks runs for `wanted`: Auto takes the all-to-all where it holds
// less than the all-gather (LLaDA-8B's 32/32 heads on 4 or more ranks), else the all-gather
// (ties too: it runs two collectives a layer, not four); AllToAll throws when the heads do not
// split, naming the counts.
Exchange resolve_exchange(Exchange wanted, int heads, int kv_heads, int n);

}  // namespace mosaic::parallel
