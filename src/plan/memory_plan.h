#pragma once
// A step's memory plan: chunk counts, lifetimes, offsets and the figures we report.
#include <cstddef>
#include <deque>
#include <functional>
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
  std::vector<int64_t> chunk_rows;  // per region: rows per chunk, 0 = one chunk
  std::vector<int> chunks;          // per region: the chunk count those rows give
  size_t act_size = 4;
  std::vector<Lifetime> life;
  Placement placement;
  std::vector<size_t> live;  // live bytes at each node
  size_t peak_live = 0;
  int peak_node = 0;
  double avg_live = 0;        // mean over nodes
  double avg_live_timed = 0;  // mean over the step's (modeled) time: nodes weighted by cost
  int64_t tame_floor = 0;               // the taming floor the search settled on (0: none)
  std::vector<std::string> search_log;  // what the chunk search did, for `info --plan`

  size_t arena_bytes() const { return placement.arena_bytes; }
  // The arena's prefix holding persistent tensors: must survive between steps.
  size_t persistent_bytes() const { return placement.persistent_bytes; }
  // Peak over the time-weighted average: what a memory-over-time trace of the step shows.
  double peak_to_average() const { return avg_live_timed > 0 ? peak_live / avg_live_timed : 0.0; }
  double peak_to_node_average() const { return avg_live > 0 ? peak_live / avg_live : 0.0; }
};

MemoryPlan make_plan(const Graph& g, const Dims& d, std::vector<int64_t> chunk_rows, size_t act_size);
// The same with a chunk count per region (equal chunks).
MemoryPlan make_plan(const Graph& g, const Dims& d, const std::vector<int>& chunks, size_t act_size);

// Peak taming: once a plan fits, the regions at the peak keep being split (their chunks
// halved) while chunks stay at least `tame_min_rows` rows; then every region gets back the
// largest chunks (in rows, not only whole divisions) that keep it under the tamed peak. The
// result: the lowest peak that floor allows, a flat memory profile, and GEMMs no smaller than
// the floor (kTameTarget picks the floor, from this one up). Steps shorter than
// twice the floor are never chunked unless the budget demands it. 0 turns taming off (chunk
// only to fit the budget). docs/PERFORMANCE.md has the measurements behind the default.
constexpr int64_t kTameMinRows = 2048;
// The taming goal: peak over time-weighted average live memory. Taming tries the floors
// tame_min_rows x 8, x 4, x 2 (largest first) and keeps the first plan that meets the goal, so
// a step gets the fewest, largest chunks that make its memory flat enough; when none does, it
// tames down to tame_min_rows. 0 turns the goal off (always tame down to the floor).
// docs/PERFORMANCE.md has the measurements: larger chunks run faster, at a higher (flat) arena.
constexpr double kTameTarget = 1.15;
constexpr int kTameFloorSteps = 3;
// Relaxed chunks keep row counts that are multiples of this (tensor-core tile friendly).
constexpr int64_t kChunkRowAlign = 128;

// The lazy chunking search: start with no chunking; while the plan exceeds `budget`, split
// the region holding the current peak into the fewest chunks that bring that node under
// the budget; then tame. Throws OutOfBudget (with the largest L that fits) when no split can help.
MemoryPlan plan_for_budget(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                           int64_t tame_min_rows = kTameMinRows, double tame_target = kTameTarget);
// The same search without the error: nullopt when nothing fits.
std::optional<MemoryPlan> try_plan_for_budget(const Graph& g, const Dims& d, size_t act_size,
                                              size_t budget, int64_t tame_min_rows = kTameMinRows,
                                              double tame_target = kTameTarget);

// The largest n >= lo with fits(n), for a `fits` that holds up to some n and not past it; 0
// when fits(lo) fails. Doubles from `upper` while it fits, then bisects.
int64_t largest_fitting(int64_t lo, int64_t upper, const std::function<bool(int64_t)>& fits);

// Largest L (with the given M) whose plan fits `budget`, or 0. Binary search on L.
int64_t max_tokens_that_fit(const Graph& g, int64_t M, size_t act_size, size_t budget,
                            int64_t upper = int64_t{1} << 26);

// Plans by (dims, budget, taming floor and goal): a graph serves every step, a plan every
// step of one shape.
class PlanCache {
 public:
  // At most kMaxPlans are kept (a server sees a new shape with almost every request); past
  // that the oldest goes. A plan returned stays valid until kMaxPlans newer ones were made.
  static constexpr size_t kMaxPlans = 256;
  const MemoryPlan& get(const Graph& g, const Dims& d, size_t act_size, size_t budget,
                        int64_t tame_min_rows = kTameMinRows, double tame_target = kTameTarget);
  size_t size() const { return plans_.size(); }

 private:
  using Key = std::tuple<Dims, size_t, int64_t, double>;
  std::map<Key, std::unique_ptr<MemoryPlan>> plans_;
  std::deque<Key> order_;  // oldest first
};

}  // namespace mosaic
