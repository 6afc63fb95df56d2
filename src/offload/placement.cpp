#include "offload/placement.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace mosaic::offload {

LayerPlacement::LayerPlacement(int experts, int slots)
    : slot_of_(static_cast<size_t>(experts), -1), expert_in_(static_cast<size_t>(slots)) {
  MOSAIC_CHECK(experts > 0 && slots >= 0 && slots <= experts, "placement: {} GPU slots for {} experts", slots,
               experts);
  for (int s = 0; s < slots; ++s) slot_of_[s] = s, expert_in_[s] = s;
}

void LayerPlacement::swap(int in, int out) {
  MOSAIC_CHECK(in >= 0 && in < experts() && out >= 0 && out < experts() && !resident(in) && resident(out),
               "placement: cannot move expert {} into the slot of expert {}", in, out);
  const int s = slot_of_[out];
  slot_of_[out] = -1;
  slot_of_[in] = s;
  expert_in_[s] = in;
}

std::vector<int64_t> count_routes(const int32_t* ids, int64_t pairs, int experts) {
  std::vector<int64_t> c(static_cast<size_t>(experts), 0);
  for (int64_t i = 0; i < pairs; ++i) {
    MOSAIC_CHECK(ids[i] >= 0 && ids[i] < experts, "placement: pair {} is routed to expert {} of {}", i, ids[i],
                 experts);
    ++c[ids[i]];
  }
  return c;
}

namespace {

// Expert ids ordered by pairs, most first (ties: lower id).
std::vector<int32_t> by_pairs_descending(const std::vector<int64_t>& counts) {
  std::vector<int32_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  return order;
}

}  // namespace

std::vector<Swap> plan_refresh(const LayerPlacement& p, const std::vector<int64_t>& counts) {
  MOSAIC_CHECK(static_cast<int>(counts.size()) == p.experts(), "refresh: {} counts for {} experts", counts.size(),
               p.experts());
  std::vector<uint8_t> target(counts.size(), 0);
  std::vector<int32_t> promote;
  int taken = 0;
  // Among experts with as many pairs, residents first: a tie never pays for a copy.
  std::vector<int32_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (counts[a] != counts[b]) return counts[a] > counts[b];
    return p.resident(a) && !p.resident(b);
  });
  for (int32_t e : order) {
    if (taken == p.slots() || counts[e] == 0) break;
    target[e] = 1, ++taken;
    if (!p.resident(e)) promote.push_back(e);
  }
  std::vector<int32_t> demote;
  for (int32_t e = 0; e < p.experts(); ++e)
    if (p.resident(e) && !target[e]) demote.push_back(e);
  std::stable_sort(demote.begin(), demote.end(), [&](int32_t a, int32_t b) { return counts[a] < counts[b]; });
  // The target holds at most `slots` experts, so there are as many residents outside it as
  // target experts outside the GPU.
  MOSAIC_CHECK(demote.size() >= promote.size(), "refresh: {} promotions for {} free residents", promote.size(),
               demote.size());
  std::vector<Swap> swaps(promote.size());
  for (size_t i = 0; i < promote.size(); ++i) swaps[i] = {promote[i], demote[i]};
  return swaps;
}

std::vector<Swap> LruPlacement::fetch(const LayerPlacement& p, const std::vector<int64_t>& counts) {
  MOSAIC_CHECK(counts.size() == last_use_.size() && static_cast<int>(counts.size()) == p.experts(),
               "lru: {} counts for {} experts", counts.size(), p.experts());
  const int64_t now = clock_++;
  for (size_t e = 0; e < counts.size(); ++e)
    if (counts[e] > 0) last_use_[e] = now;
  // Residents this step does not route to, least recently used first (ties: lower id).
  std::vector<int32_t> victims;
  for (int32_t e = 0; e < p.experts(); ++e)
    if (p.resident(e) && counts[e] == 0) victims.push_back(e);
  std::stable_sort(victims.begin(), victims.end(), [&](int32_t a, int32_t b) { return last_use_[a] < last_use_[b]; });
  std::vector<Swap> swaps;
  size_t v = 0;
  for (int32_t e : by_pairs_descending(counts)) {
    if (counts[e] == 0 || v == victims.size()) break;
    if (!p.resident(e)) swaps.push_back({e, victims[v++]});
  }
  return swaps;
}

void apply_swaps(LayerPlacement& p, const std::vector<Swap>& swaps) {
  for (const Swap& s : swaps) p.swap(s.promote, s.demote);
}

}  // namespace mosaic::offload
