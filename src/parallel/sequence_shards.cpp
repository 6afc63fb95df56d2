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

bool heads_split(int heads, int kv_heads, int n) {
  return n >= 1 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && heads % n == 0 &&
         (kv_heads % n == 0 || n % kv_heads == 0);
}

HeadGroups shard_heads(int heads, int kv_heads, int n) {
  MOSAIC_CHECK(n >= 1, "cannot cut heads across {} ranks", n);
  MOSAIC_CHECK(heads_split(heads, kv_heads, n),
               "the all-to-all attention gives each of {} ranks whole heads: {} query heads must divide by {}, and "
               "{} key/value heads by {} (or {} by them)",
               n, heads, n, kv_heads, n, n);
  HeadGroups g;
  for (int r = 0; r < n; ++r) {
    g.heads.push_back({static_cast<int64_t>(r) * (heads / n), heads / n});
    // More ranks than key/value heads: rank r's query heads all read key/value head r * kv / n.
    if (kv_heads % n == 0) g.kv_heads.push_back({static_cast<int64_t>(r) * (kv_heads / n), kv_heads / n});
    else g.kv_heads.push_back({static_cast<int64_t>(r) * kv_heads / n, 1});
  }
  return g;
}

const char* exchange_name(Exchange e) {
  switch (e) {
    case Exchange::Auto: return "auto";
    case Exchange::AllGather: return "all-gather";
    case Exchange::AllToAll: return "all-to-all";
  }
  return "?";
}

Exchange parse_exchange(const std::string& name) {
  for (Exchange e : {Exchange::Auto, Exchange::AllGather, Exchange::AllToAll})
    if (name == exchange_name(e)) return e;
  MOSAIC_FAIL("--exchange '{}': expected auto, all-gather or all-to-all", name);
}

int exchange_heads_per_row(Exchange e, int heads, int kv_heads, int n) {
  if (e == Exchange::AllGather) return 2 * kv_heads;
  if (e != Exchange::AllToAll || !heads_split(heads, kv_heads, n)) return -1;
  const HeadGroups g = shard_heads(heads, kv_heads, n);
  return static_cast<int>(2 * g.heads[0].count + 2 * g.kv_heads[0].count);
}

Exchange resolve_exchange(Exchange wanted, int heads, int kv_heads, int n) {
  if (wanted == Exchange::Auto) {
    const int to_all = exchange_heads_per_row(Exchange::AllToAll, heads, kv_heads, n);
    return to_all >= 0 && to_all < exchange_heads_per_row(Exchange::AllGather, heads, kv_heads, n)
               ? Exchange::AllToAll
               : Exchange::AllGather;
  }
  if (wanted == Exchange::AllToAll) shard_heads(heads, kv_heads, n);  // throws when the heads do not split
  return wanted;
}

}  // namespace mosaic::parallel
