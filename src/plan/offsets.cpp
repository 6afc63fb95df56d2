#include "plan/offsets.h"

#include <algorithm>
#include <numeric>

namespace mosaic {

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

Placement plan_offsets(const std::vector<Lifetime>& life, size_t alignment, const std::vector<bool>& persistent) {
  Placement p;
  p.offset.assign(life.size(), 0);
  auto is_persistent = [&](size_t t) { return t < persistent.size() && persistent[t]; };
  for (size_t t = 0; t < life.size(); ++t)
    if (is_persistent(t) && life[t].planned()) {
      p.offset[t] = p.persistent_bytes;
      p.persistent_bytes += align_up(life[t].bytes, alignment);
    }
  p.arena_bytes = p.persistent_bytes;
  std::vector<int> order;
  for (size_t t = 0; t < life.size(); ++t)
    if (life[t].planned() && life[t].bytes > 0 && !is_persistent(t)) order.push_back(static_cast<int>(t));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (life[a].bytes != life[b].bytes) return life[a].bytes > life[b].bytes;
    return life[a].first < life[b].first;
  });

  struct Placed {
    size_t begin, end;
    int first, last;
  };
  std::vector<Placed> placed;  // kept sorted by begin
  placed.reserve(order.size());
  std::vector<const Placed*> overlapping;
  for (int t : order) {
    const Lifetime& l = life[t];
    const size_t size = align_up(l.bytes, alignment);
    overlapping.clear();
    for (const Placed& q : placed)
      if (q.first <= l.last && l.first <= q.last) overlapping.push_back(&q);
    // `placed` is sorted by begin, so `overlapping` is too.
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, top = p.persistent_bytes;
    for (const Placed* q : overlapping) {
      if (q->begin > top) {
        size_t gap = q->begin - top;
        if (gap >= size && gap < best_gap) {
          best_gap = gap;
          best = top;
        }
      }
      top = std::max(top, q->end);
    }
    size_t off = best != SIZE_MAX ? best : top;
    p.offset[t] = off;
    p.arena_bytes = std::max(p.arena_bytes, off + size);
    Placed np{off, off + size, l.first, l.last};
    auto it = std::upper_bound(placed.begin(), placed.end(), np,
                               [](const Placed& a, const Placed& b) { return a.begin < b.begin; });
    placed.insert(it, np);
  }
  return p;
}

}  // namespace mosaic
