#pragma once
// A step's memory plan: chunk counts, lifetimes, offsets and the figures we report.
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "graph/graph.h"
#include "plan/liveness.h"
#include "plan/offsets.h"

namespace mosaic {

struct MemoryPlan {
  Dims dims;
  std::vector<int> chunks;  // per region
  size_t act_size = 4;
  std::vector<Lifetime> life;
  Placement placement;
  std::vector<size_t> live;  // live bytes at each node
  size_t peak_live = 0;
  int peak_node = 0;
  double avg_live = 0;        // mean over nodes
  double avg_live_timed = 0;  // mean over the step's (modeled) time: nodes weighted by cost
  std::vector<std::string> search_log;  // what the chunk search did, for `info --plan`

  size_t arena_bytes() const { return placement.arena_bytes; }
  // Peak over the time-weighted average: what a memory-over-time trace of the step shows.
  double peak_to_average() const { return avg_live_timed > 0 ? peak_live / avg_live_timed : 0.0; }
  double peak_to_node_average() const { return avg_live > 0 ? peak_live / avg_live : 0.0; }
};

MemoryPlan make_plan(const Graph& g, const Dims& d, std::vector<int> chunks, size_t act_size);

// Once a plan fits, the region at the peak keeps being split while its chunks stay at least
// this many rows ("peak taming"): the peak drops toward the rest of the step while the GEMMs
// keep shapes that run as fast as unchunked, and short steps (L < 2 * tame_min_rows) are left
// untouched. 0 turns taming off (chunk only to fit the budget). docs/PERFORMANCE.md has the
// measurements behind the default.
constexpr int64_t kTameMinRows = 8192;

// The lazy chunking search: start with no chunking; while the plan exceeds `budget`, split
// the region holding the current peak into the fewest chunks that bring that node under
// the budget. Throws OutOfBudget (with the largest L that fits) when no split can help.
MemoryPlan plan_for_budget(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                           int64_t tame_min_rows = kTameMinRows);
// The same search without the error: nullopt when nothing fits.
std::optional<MemoryPlan> try_plan_for_budget(const Graph& g, const Dims& d, size_t act_size,
                                              size_t budget, int64_t tame_min_rows = kTameMinRows);

// Largest L (with the given M) whose plan fits `budget`, or 0. Binary search on L.
int64_t max_tokens_that_fit(const Graph& g, int64_t M, size_t act_size, size_t budget,
                            int64_t upper = int64_t{1} << 26);

// Plans by (L, M, budget): a graph serves every step, a plan every step of one shape.
class PlanCache {
 public:
  const MemoryPlan& get(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                        int64_t tame_min_rows = kTameMinRows);
  size_t size() const { return plans_.size(); }

 private:
  std::map<std::tuple<int64_t, int64_t, size_t, int64_t>, std::unique_ptr<MemoryPlan>> plans_;
};

}  // namespace mosaic
