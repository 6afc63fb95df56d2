#include "parallel/sequence_shards.h"

#include "core/error.h"

namespace mosaic::parallel {

std::vector<Shard> shard_rows(int64_t rows, int n) {
  MOSAIC_CHECK(n >= 1, "cannot cut rows across {} ranks", n);
  MOSAIC_CHECK(rows >= 0, "cannot cut {} rows", rows);
  std::vector<Shard> out;
  int64_t at = 0;
  for (int r = 0; r < n; ++r) {
    const int64_t count = rows / n + (r < rows % n ? 1 : 0);
    out.push_back({at, count});
    at += count;
  }
  return out;
}

size_t shard_of(const std::vector<Shard>& shards, int64_t row) {
  for (size_t r = 0; r < shards.size(); ++r)
    if (row >= shards[r].begin && row < shards[r].end()) return r;
  MOSAIC_FAIL("row {} is in none of the {} shards", row, shards.size());
}

HeadGroups shard_heads(int heads, int kv_heads, int n) {
  MOSAIC_CHECK(n >= 1, "cannot cut heads across {} ranks", n);
  MOSAIC_CHECK(heads % n == 0 && kv_heads % n == 0,
               "the all-to-all attention gives each of {} ranks whole heads: {} query heads and {} key/value heads "
               "do not both divide by {}",
               n, heads, kv_heads, n);
  HeadGroups g;
  for (int r = 0; r < n; ++r) {
    g.heads.push_back({static_cast<int64_t>(r) * (heads / n), heads / n});
    g.kv_heads.push_back({static_cast<int64_t>(r) * (kv_heads / n), kv_heads / n});
  }
  return g;
}

}  // namespace mosaic::parallel
