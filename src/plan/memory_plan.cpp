#include "plan/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <map>
#include <set>

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


// Taming and the budget search split regions in whole halvings, so most regions end up
// with smaller chunks than the peak requires. Give each chunked region back the largest
// chunk rows whose nodes stay at or under `peak`: the arena the peak already needs is used
// for fewer, larger GEMMs. A region's chunk rows change live bytes only at its own nodes
// (its locals, and full tensors extended over a chunked region's span), so all regions are
// searched at once, by bisection on each region's rows.
std::vector<int64_t> relax_chunks(const Graph& g, const Dims& d, size_t act_size, size_t peak,
                                  const std::vector<int>& chunks, std::vector<std::string>& log) {
  const size_t R = g.regions.size();
  const std::vector<int64_t> tamed = g.rows_for_counts(d, chunks);
  std::vector<int64_t> fits = tamed;  // per region: rows known to fit
  std::vector<int64_t> over(R, 0);                           // and rows known not to (0: none yet)
  for (size_t r = 0; r < R; ++r)
    if (chunks[r] > 1) over[r] = g.regions[r].rows.eval(d) + 1;
  std::vector<int64_t> trial(R);
  for (;;) {
    bool open = false;
    for (size_t r = 0; r < R; ++r) {
      const bool searching = over[r] - fits[r] > 1;
      trial[r] = searching ? fits[r] + (over[r] - fits[r]) / 2 : fits[r];
      open = open || searching;
    }
    if (!open) break;
    auto live = live_bytes_per_node(compute_lifetimes(g, d, trial, act_size), g.nodes.size());
    std::vector<size_t> region_peak(R, 0);
    for (size_t i = 0; i < live.size(); ++i)
      region_peak[g.nodes[i].region] = std::max(region_peak[g.nodes[i].region], live[i]);
    for (size_t r = 0; r < R; ++r)
      if (over[r] - fits[r] > 1) (region_peak[r] <= peak ? fits[r] : over[r]) = trial[r];
  }
  // GEMMs and attention run measurably slower on chunks of odd row counts (Dream-7B at 32k:
  // +20% with ~1200-row chunks; docs/PERFORMANCE.md): round relaxed rows down to a multiple
  // of kChunkRowAlign, never below what taming chose.
  for (size_t r = 0; r < R; ++r)
    if (chunks[r] > 1 && fits[r] < g.regions[r].rows.eval(d) && fits[r] > kChunkRowAlign)
      fits[r] = std::max(tamed[r], fits[r] / kChunkRowAlign * kChunkRowAlign);
  std::map<std::string, std::string> changed;  // by region kind: repeated layers log once
  for (size_t r = 0; r < R; ++r) {
    if (chunks[r] <= 1) continue;
    const int64_t n = g.chunk_count(static_cast<int>(r), d, fits[r]);
    if (n == chunks[r]) continue;
    changed.emplace(region_kind(g.regions[r].name),
                    fmt::format("{} -> {} chunks of {} rows", chunks[r], n, g.chunk_rows(static_cast<int>(r), d, fits[r])));
  }
  for (const auto& [name, what] : changed) log.push_back(fmt::format("relaxed {}: {} (the peak holds)", name, what));
  return fits;
}

double time_weighted_average(const std::vector<size_t>& live, const std::vector<double>& cost) {
  double weighted = 0, total = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    weighted += cost[i] * static_cast<double>(live[i]);
    total += cost[i];
  }
  return total > 0 ? weighted / total : 0.0;
}

// Halves the chunks of the regions at the peak until the peak's regions reach the floor.
void tame_peaks(const Graph& g, const Dims& d, size_t act_size, int64_t min_rows, std::vector<int>& chunks,
                std::vector<std::string>& log) {
  if (min_rows <= 0) return;
  for (int iter = 0;; ++iter) {
    if (iter == 64) {
      log.push_back("taming: stopped after 64 rounds");
      return;
    }
    auto life = compute_lifetimes(g, d, g.rows_for_counts(d, chunks), act_size);
    auto live = live_bytes_per_node(life, g.nodes.size());
    const Peak pk = find_peak(live);
    std::set<std::string> split;
    for (size_t node = 0; node < live.size(); ++node) {
      if (live[node] < pk.bytes) continue;
      int r = g.nodes[node].region;
      const Region& reg = g.regions[r];
      const int64_t rows = reg.rows.eval(d);
      if (!reg.chunkable || rows / (static_cast<int64_t>(chunks[r]) * 2) < min_rows) continue;
      if (local_bytes_at(g, life, r, static_cast<int>(node)) == 0) continue;
      chunks[r] *= 2;
      split.insert(region_kind(reg.name));
    }
    if (split.empty()) return;
    for (const auto& name : split) log.push_back(fmt::format("taming: peak {} B in {}: chunks halved", pk.bytes, name));
  }
}

}  // namespace

MemoryPlan make_plan(const Graph& g, const Dims& d, const std::vector<int>& chunks, size_t act_size) {
  return make_plan(g, d, g.rows_for_counts(d, chunks), act_size);
}

MemoryPlan make_plan(const Graph& g, const Dims& d, std::vector<int64_t> chunk_rows, size_t act_size) {
  MemoryPlan p;
  p.dims = d;
  p.chunk_rows = std::move(chunk_rows);
  p.chunks.resize(g.regions.size());
  for (size_t r = 0; r < g.regions.size(); ++r)
    p.chunks[r] = static_cast<int>(g.chunk_count(static_cast<int>(r), d, p.chunk_rows[r]));
  p.act_size = act_size;
  p.life = compute_lifetimes(g, d, p.chunk_rows, act_size);
  std::vector<bool> persistent(g.tensors.size());
  for (size_t t = 0; t < g.tensors.size(); ++t) persistent[t] = g.tensors[t].kind == TensorKind::Persistent;
  p.placement = plan_offsets(p.life, kTensorAlignment, persistent);
  p.live = live_bytes_per_node(p.life, g.nodes.size());
  Peak pk = find_peak(p.live);
  p.peak_live = pk.bytes;
  p.peak_node = pk.node;
  if (!p.live.empty())
    p.avg_live = std::accumulate(p.live.begin(), p.live.end(), 0.0) / static_cast<double>(p.live.size());
  p.avg_live_timed = time_weighted_average(p.live, node_costs(g, d, act_size));
  if (p.avg_live_timed <= 0) p.avg_live_timed = p.avg_live;
  return p;
}

namespace {

// The plan of chunk counts tamed down to `floor`, with rows given back to every region while
// the tamed peak holds. Its arena exceeds `budget` only when the tamed plan's does
// (fragmentation).
MemoryPlan relax_tamed(const Graph& g, const Dims& d, size_t act_size, const std::vector<int>& chunks, int64_t floor,
                       size_t budget, std::vector<std::string>& log) {
  MemoryPlan p = make_plan(g, d, chunks, act_size);
  p.tame_floor = floor;
  if (p.arena_bytes() > budget) return p;
  // Bigger chunks can place worse. Keep them where fragmentation adds at most 1% to the
  // tamed arena: bisect on the peak the relaxation aims at, from the tamed peak down.
  const size_t arena_cap = p.arena_bytes() + p.arena_bytes() / 100;
  size_t aim_ok = 0, aim_bad = p.peak_live + 1;
  std::optional<MemoryPlan> best;
  std::vector<std::string> best_log;
  for (int attempt = 0; attempt < 6 && aim_bad - aim_ok > 1; ++attempt) {
    const size_t aim = attempt == 0 ? p.peak_live : aim_ok + (aim_bad - aim_ok) / 2;
    std::vector<std::string> relax_log;
    std::vector<int64_t> relaxed = relax_chunks(g, d, act_size, aim, chunks, relax_log);
    // Nothing to give back even at the tamed peak (an unchunked step, say): no lower aim can.
    if (attempt == 0 && relaxed == p.chunk_rows) break;
    MemoryPlan q = make_plan(g, d, relaxed, act_size);
    if (q.arena_bytes() <= arena_cap) {
      aim_ok = aim;
      best = std::move(q);
      best_log = std::move(relax_log);
    } else {
      aim_bad = aim;
    }
  }
  if (best && best->arena_bytes() <= budget) {
    log.insert(log.end(), best_log.begin(), best_log.end());
    best->tame_floor = floor;
    return std::move(*best);
  }
  return p;
}

}  // namespace

std::optional<MemoryPlan> try_plan_for_budget(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                                              int64_t tame_min_rows, double tame_target) {
  std::vector<int> chunks(g.regions.size(), 1);
  std::vector<std::string> log;
  size_t target = budget;  // lowered when fragmentation puts the arena above the live peak
  for (int iter = 0; iter < 4 * static_cast<int>(g.regions.size()) + 16; ++iter) {
    auto life = compute_lifetimes(g, d, g.rows_for_counts(d, chunks), act_size);
    auto live = live_bytes_per_node(life, g.nodes.size());
    Peak pk = find_peak(live);
    if (pk.bytes <= target) {
      // The taming goal: the largest floor whose plan is flat enough, so that the step keeps
      // the fewest, largest GEMMs that meet it. Floors at which no region could be halved
      // (steps shorter than twice the floor) are not candidates: they would not tame at all.
      if (tame_min_rows > 0 && tame_target > 0) {
        for (int step = kTameFloorSteps; step >= 1; --step) {
          if (tame_min_rows > (d.L >> (step + 1))) continue;  // 2 * floor > L, without overflow
          const int64_t floor = tame_min_rows << step;
          std::vector<std::string> floor_log;
          std::vector<int> tamed = chunks;
          tame_peaks(g, d, act_size, floor, tamed, floor_log);
          MemoryPlan p = relax_tamed(g, d, act_size, tamed, floor, budget, floor_log);
          const bool meets = p.arena_bytes() <= budget && p.peak_to_average() <= tame_target;
          log.push_back(fmt::format("taming goal: floor {} rows gives peak/avg {:.3f} ({} {:.2f})", floor,
                                    p.peak_to_average(), meets ? "meets" : "misses", tame_target));
          if (meets) {
            log.insert(log.end(), floor_log.begin(), floor_log.end());
            p.search_log = std::move(log);
            return p;
          }
        }
      }
      // Tamed in place: when fragmentation sends the search round again, it goes on from the
      // tamed counts.
      tame_peaks(g, d, act_size, tame_min_rows, chunks, log);
      MemoryPlan p = relax_tamed(g, d, act_size, chunks, tame_min_rows, budget, log);
      if (tame_min_rows > 0 && tame_target > 0 && p.arena_bytes() <= budget)
        log.push_back(fmt::format("taming goal: no larger floor meets {:.2f}; tamed down to {} rows (peak/avg {:.3f})",
                                  tame_target, tame_min_rows, p.peak_to_average()));
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

MemoryPlan plan_for_budget(const Graph& g, const Dims& d, size_t act_size, size_t budget, int64_t tame_min_rows,
                           double tame_target) {
  if (auto p = try_plan_for_budget(g, d, act_size, budget, tame_min_rows, tame_target)) return std::move(*p);
  // A step of a cached generation (K, B set) has caches sized by the whole generation, which a
  // search over this graph's L alone would keep fixed: the generation's planner says what fits.
  std::string largest = "`mosaic info --cache` gives the longest generation that fits";
  if (d.K == 0 && d.B == 0) {
    const int64_t fit = max_tokens_that_fit(g, d.M, act_size, budget, std::max<int64_t>(d.L, 2));
    largest = fit > 0 ? fmt::format("the largest L that fits is {}", fit)
                      : fmt::format("not even L=M fits with M={} head rows (lower --block-length)", d.M);
  }
  MemoryPlan unchunked = make_plan(g, d, std::vector<int>(g.regions.size(), 1), act_size);
  throw OutOfBudget(fmt::format(
      "the step at L={} tokens (M={} head rows) does not fit the activation budget of {} even with "
      "chunking (unchunked it needs {}); {}. Raise --memory-budget or shorten "
      "the prompt / --gen-length",
      d.L, d.M, human_bytes(static_cast<double>(budget)), human_bytes(static_cast<double>(unchunked.arena_bytes())),
      largest));
}

int64_t max_tokens_that_fit(const Graph& g, int64_t M, size_t act_size, size_t budget, int64_t upper) {
  // Searched without the taming goal, for speed (up to four tamings per probe otherwise). That
  // is conservative: the goal only adds plans that fit, so a length found here fits with it.
  auto fits = [&](int64_t L) {
    return try_plan_for_budget(g, Dims{L, std::min(M, L)}, act_size, budget, kTameMinRows, 0.0).has_value();
  };
  return largest_fitting(std::max<int64_t>(M, 1), upper, fits);
}

int64_t largest_fitting(int64_t lo, int64_t upper, const std::function<bool(int64_t)>& fits) {
  int64_t hi = std::max(upper, lo + 1);
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
                                 int64_t tame_min_rows, double tame_target) {
  auto key = std::make_tuple(d, budget, tame_min_rows, tame_target);
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<MemoryPlan>(plan_for_budget(g, d, act_size, budget, tame_min_rows, tame_target));
  if (plans_.size() >= kMaxPlans) {
    plans_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(key);
  return *plans_.emplace(key, std::move(p)).first->second;
}

}  // namespace mosaic
