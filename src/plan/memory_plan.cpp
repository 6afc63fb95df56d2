#include "plan/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "core/error.h"
#include "core/format.h"
#include "plan/cost_model.h"

namespace mosaic {

namespace {


struct Peak {
  size_t bytes = 0;
  int node = 0;
};

Peak find_peak(const std::vector<size_t>& live) {
  Peak p;
  for (size_t i = 0; i < live.size(); ++i)
    if (live[i] > p.bytes) p = {live[i], static_cast<int>(i)};
  return p;
}

// Bytes live at `node` that belong to region r's locals (the part chunking shrinks).
size_t local_bytes_at(const Graph& g, const std::vector<Lifetime>& life, int r, int node) {
  size_t s = 0;
  for (size_t t = 0; t < g.tensors.size(); ++t)
    if (g.tensors[t].region == r && life[t].planned() && life[t].first <= node && node <= life[t].last)
      s += life[t].bytes;
  return s;
}


void tame_peaks(const Graph& g, const Dims& d, size_t act_size, int64_t min_rows, std::vector<int>& chunks,
                std::vector<std::string>& log) {
  if (min_rows <= 0) return;
  for (int iter = 0; iter < 64; ++iter) {
    auto life = compute_lifetimes(g, d, chunks, act_size);
    auto live = live_bytes_per_node(life, g.nodes.size());
    Peak pk = find_peak(live);
    bool progressed = false;
    for (size_t node = 0; node < live.size(); ++node) {
      if (live[node] < pk.bytes) continue;
      int r = g.nodes[node].region;
      const Region& reg = g.regions[r];
      const int64_t rows = reg.rows.eval(d);
      if (!reg.chunkable || rows / (chunks[r] * 2) < min_rows) continue;
      if (local_bytes_at(g, life, r, static_cast<int>(node)) == 0) continue;
      chunks[r] *= 2;
      progressed = true;
    }
    if (!progressed) return;
  }
  log.push_back("peak taming stopped after 64 rounds");
}

}  // namespace

MemoryPlan make_plan(const Graph& g, const Dims& d, std::vector<int> chunks, size_t act_size) {
  MemoryPlan p;
  p.dims = d;
  p.chunks = std::move(chunks);
  p.act_size = act_size;
  p.life = compute_lifetimes(g, d, p.chunks, act_size);
  p.placement = plan_offsets(p.life);
  p.live = live_bytes_per_node(p.life, g.nodes.size());
  Peak pk = find_peak(p.live);
  p.peak_live = pk.bytes;
  p.peak_node = pk.node;
  if (!p.live.empty())
    p.avg_live = std::accumulate(p.live.begin(), p.live.end(), 0.0) / static_cast<double>(p.live.size());
  const std::vector<double> cost = node_costs(g, d, act_size);
  double weighted = 0, total = 0;
  for (size_t i = 0; i < p.live.size(); ++i) {
    weighted += cost[i] * static_cast<double>(p.live[i]);
    total += cost[i];
  }
  p.avg_live_timed = total > 0 ? weighted / total : p.avg_live;
  return p;
}

std::optional<MemoryPlan> try_plan_for_budget(const Graph& g, const Dims& d, size_t act_size,
                                              size_t budget, int64_t tame_min_rows) {
  std::vector<int> chunks(g.regions.size(), 1);
  std::vector<std::string> log;
  size_t target = budget;  // lowered when fragmentation puts the arena above the live peak
  for (int iter = 0; iter < 4 * static_cast<int>(g.regions.size()) + 16; ++iter) {
    auto life = compute_lifetimes(g, d, chunks, act_size);
    auto live = live_bytes_per_node(life, g.nodes.size());
    Peak pk = find_peak(live);
    if (pk.bytes <= target) {
      tame_peaks(g, d, act_size, tame_min_rows, chunks, log);
      MemoryPlan p = make_plan(g, d, chunks, act_size);
      if (p.arena_bytes() <= budget) {
        p.search_log = std::move(log);
        return p;
      }
      size_t excess = p.arena_bytes() - budget;
      log.push_back(fmt::format("fragmentation: arena {} B exceeds the budget by {} B; lowering the target",
                                p.arena_bytes(), excess));
      if (excess >= target) return std::nullopt;
      target -= excess;
      continue;
    }
    // Every region holding a node at the peak gets split; repeated layers peak together,
    // so one round handles them all.
    bool progressed = false;
    for (size_t node = 0; node < live.size(); ++node) {
      if (live[node] < pk.bytes) continue;
      int r = g.nodes[node].region;
      const Region& reg = g.regions[r];
      if (!reg.chunkable) continue;
      // The search takes the fewest chunks that fit, so no floor on chunk rows is needed.
      int64_t max_chunks = std::max<int64_t>(1, reg.rows.eval(d));
      if (chunks[r] >= max_chunks) continue;
      size_t local = local_bytes_at(g, life, r, static_cast<int>(node));
      if (local == 0) continue;
      size_t fixed = live[node] - local;
      // Local bytes scale as 1/chunks: take the fewest chunks that bring this node under
      // the target, or the most allowed when even that cannot.
      int64_t want = max_chunks;
      if (fixed < target) {
        double local_unchunked = static_cast<double>(local) * chunks[r];
        want = static_cast<int64_t>(std::ceil(local_unchunked / static_cast<double>(target - fixed)));
      }
      want = std::clamp<int64_t>(want, chunks[r] + 1, max_chunks);
      log.push_back(fmt::format("peak {} B at node {} ({} in {}): {} -> {} chunks", live[node], node,
                                op_name(g.nodes[node].op), reg.name, chunks[r], want));
      chunks[r] = static_cast<int>(want);
      progressed = true;
    }
    if (!progressed) return std::nullopt;
  }
  return std::nullopt;
}

MemoryPlan plan_for_budget(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                           int64_t tame_min_rows) {
  if (auto p = try_plan_for_budget(g, d, act_size, budget, tame_min_rows)) return std::move(*p);
  int64_t fit = max_tokens_that_fit(g, d.M, act_size, budget, std::max<int64_t>(d.L, 2));
  const std::string largest = fit > 0 ? fmt::format("the largest L that fits is {}", fit)
                                      : fmt::format("not even L=M fits with M={} head rows (lower --block-length)", d.M);
  MemoryPlan unchunked = make_plan(g, d, std::vector<int>(g.regions.size(), 1), act_size);
  throw OutOfBudget(fmt::format(
      "the step at L={} tokens (M={} head rows) does not fit the activation budget of {} even with "
      "chunking (unchunked it needs {}); {}. Raise --memory-budget or shorten "
      "the prompt / --gen-length",
      d.L, d.M, human_bytes(static_cast<double>(budget)), human_bytes(static_cast<double>(unchunked.arena_bytes())),
      largest));
}

int64_t max_tokens_that_fit(const Graph& g, int64_t M, size_t act_size, size_t budget, int64_t upper) {
  auto fits = [&](int64_t L) { return try_plan_for_budget(g, Dims{L, std::min(M, L)}, act_size, budget).has_value(); };
  int64_t lo = std::max<int64_t>(M, 1), hi = std::max(upper, lo + 1);
  if (!fits(lo)) return 0;
  while (fits(hi)) {  // grow past a too-small guess
    lo = hi;
    if (hi >= (int64_t{1} << 32)) return hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

const MemoryPlan& PlanCache::get(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                                 int64_t tame_min_rows) {
  auto key = std::make_tuple(d.L, d.M, budget, tame_min_rows);
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<MemoryPlan>(plan_for_budget(g, d, act_size, budget, tame_min_rows));
  return *plans_.emplace(key, std::move(p)).first->second;
}

}  // namespace mosaic
