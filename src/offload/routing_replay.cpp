#include "offload/routing_replay.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace mosaic::offload {

namespace {

int position_of(const std::vector<int>& layers, int layer) {
  const auto it = std::find(layers.begin(), layers.end(), layer);
  MOSAIC_CHECK(it != layers.end(), "routing replay: layer {} has no routed experts", layer);
  return static_cast<int>(it - layers.begin());
}

// splitmix64's finalizer: a fixed, well-spread choice per (layer, row, expert).
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

RoutingRecord::RoutingRecord(int experts, int top_k, std::vector<int> layers)
    : experts_(experts), top_k_(top_k), layers_(std::move(layers)) {
  MOSAIC_CHECK(experts_ > 0 && top_k_ > 0 && !layers_.empty(), "routing record: {} experts, top {}, {} layers",
               experts_, top_k_, layers_.size());
}

void RoutingRecord::begin_step() { steps_.emplace_back(layers_.size()); }

void RoutingRecord::routed(int layer, int64_t r0, int64_t rows, int top_k, int32_t* ids) {
  MOSAIC_CHECK(!steps_.empty(), "routing record: routing before the first step");
  MOSAIC_CHECK(top_k == top_k_, "routing record: top {} after top {}", top_k, top_k_);
  std::vector<int32_t>& v = steps_.back()[static_cast<size_t>(position_of(layers_, layer))];
  // A layer routed twice in a step (a chunked region's later chunks follow on; guidance's second
  // trunk starts again at row 0 and is not kept).
  if (r0 == 0 && !v.empty()) return;
  v.insert(v.end(), ids, ids + rows * top_k);
}

RoutingReplay::RoutingReplay(const RoutingRecord& record, int experts, int top_k, std::vector<int> layers)
    : record_(record), experts_(experts), top_k_(top_k), layers_(std::move(layers)) {
  MOSAIC_CHECK(record_.steps() > 0, "routing replay: the record holds no step");
  MOSAIC_CHECK(experts_ % record_.experts() == 0 && top_k_ % record_.top_k() == 0 &&
                   top_k_ / record_.top_k() <= experts_ / record_.experts(),
               "routing replay: a record of {} experts, top {}, cannot be spread over {} experts, top {} (the counts "
               "must be multiples of the record's, with no more picks per recorded expert than successors)",
               record_.experts(), record_.top_k(), experts_, top_k_);
}

void RoutingReplay::routed(int layer, int64_t r0, int64_t rows, int top_k, int32_t* ids) {
  MOSAIC_CHECK(step_ >= 0, "routing replay: routing before the first step");
  MOSAIC_CHECK(top_k == top_k_, "routing replay: top {} where {} was set", top_k, top_k_);
  const int j = position_of(layers_, layer);
  const std::vector<int32_t>& rec = record_.ids(step_ % record_.steps(), j % record_.layers());
  const int64_t rec_rows = static_cast<int64_t>(rec.size()) / record_.top_k();
  MOSAIC_CHECK(rec_rows > 0, "routing replay: the record has no routing for step {} layer {}", step_, j);
  const int spread = experts_ / record_.experts(), picks = top_k_ / record_.top_k();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t r = (r0 + i) % rec_rows;
    int32_t* out = ids + i * top_k_;
    for (int k = 0; k < record_.top_k(); ++k) {
      const int32_t e = rec[static_cast<size_t>(r * record_.top_k() + k)];
      const uint64_t h = mix((static_cast<uint64_t>(j) << 48) ^ (static_cast<uint64_t>(r) << 16) ^
                             static_cast<uint64_t>(e));
      const int start = static_cast<int>(h % static_cast<uint64_t>(spread));
      for (int q = 0; q < picks; ++q) *out++ = e * spread + (start + q) % spread;
    }
  }
}

std::string RoutingReplay::describe() const {
  return fmt::format("routing replayed from a record of {} steps, {} MoE layers, {} experts top {}, into {} MoE layers "
                     "of {} experts top {}",
                     record_.steps(), record_.layers(), record_.experts(), record_.top_k(), layers_.size(), experts_,
                     top_k_);
}

}  // namespace mosaic::offload
