#pragma once
// TIDE's refresh interval tau from a cost model: refreshing more often keeps more of each step's
// routed pairs on the GPU (less CPU time) but copies more experts over PCIe. The model replays
// a routing trace (the routed pairs per expert of each MoE layer at each step) under each
// candidate tau with the same refresh rule the engine runs (placement.h), and prices what it
// sees: every promoted expert's bytes over the measured host-to-device bandwidth, every layer's
// CPU experts at the measured CPU cost (in parallel, at the measured speedup). A layer's CPU
// experts run while its copies fly, so a layer-step costs the longer of the copies it waits for
// and its CPU time (split_copies); the copies it does not wait for run behind the steps, and all
// copies together bound the run from below. The tau with the least total wins.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "offload/placement.h"

namespace mosaic::offload {

// Measured inputs of the model.
struct OffloadCosts {
  double h2d_bytes_per_s = 0;   // pinned host -> device copy bandwidth
  double expert_bytes = 0;      // one routed expert's weights (gate, up, down)
  double cpu_s_per_expert = 0;  // the CPU running one expert for one row (its weights read once)
  double cpu_s_per_row = 0;     // each further row of the same expert
  // The CPU runs a layer's experts in parallel: n experts of one row each take
  // max(one expert, n / cpu_parallel_speedup experts) (1: one after another).
  double cpu_parallel_speedup = 1;
  // Layer-steps whose CPU time updated cpu_s_per_expert in the run (ExpertOffload::observe_cpu).
  int64_t cpu_observations = 0;
  // Measured: the split of a refresh's copies and tau can be priced.
  bool priced() const { return h2d_bytes_per_s > 0 && expert_bytes > 0 && cpu_s_per_expert > 0; }
};

// A layer's CPU experts at one step, each with its routed pairs: in parallel at the measured
// speedup, and never shorter than the longest one.
double cpu_seconds(const std::vector<int64_t>& pairs_per_expert, const OffloadCosts& c);

// The copies a layer waits for at a refresh. promoted: the promoted experts' pairs, most first
// (plan_refresh's order); other_cpu: the pairs of the layer's other CPU experts this step. The
// layer waits for the first `waited` copies; the rest fly behind the step (their experts run on
// the CPU now and from the GPU at the layer's next step). lagged (tide-lagged) waits for none;
// otherwise `waited` makes the longer of (waited copies, CPU time) least (ties: more waited, fewer
// CPU pairs). Without measured costs every copy is waited for (TIDE's public code).
struct CopySplit {
  int waited = 0;
  double seconds = 0;  // the layer-step's cost: the longer of the waited copies and the CPU time
  double cpu_s = 0;
};
CopySplit split_copies(const std::vector<int64_t>& promoted, const std::vector<int64_t>& other_cpu,
                       const OffloadCosts& c, bool lagged);
// The same for one refresh: `p` after its swaps (plan_refresh's order), `counts` the step's
// routed pairs per expert.
CopySplit split_refresh(const LayerPlacement& p, const std::vector<Swap>& swaps, const std::vector<int64_t>& counts,
                        const OffloadCosts& c, bool lagged);

// The routed pairs of a stretch of generation: step_in_block[i] is step i's index inside its
// block (0 starts a block), counts[i][layer][expert] its routed pairs.
struct RoutingTrace {
  std::vector<int> step_in_block;
  std::vector<std::vector<std::vector<int64_t>>> counts;
  void add(int step, std::vector<std::vector<int64_t>> layer_counts);
  int layers() const { return counts.empty() ? 0 : static_cast<int>(counts.front().size()); }
};

// What one tau costs over the trace.
struct TauCost {
  int tau = 0;  // 0: never refreshed after the trace's first step (static placement)
  double transfer_s = 0, cpu_s = 0;
  double layer_steps_s = 0;  // the layer-steps' costs (split_copies), summed
  int64_t swaps = 0, waited = 0, gpu_pairs = 0, cpu_pairs = 0;
  bool lagged = false;
  // The link carries every copy, waited for or not: the run is no shorter than all of them.
  double total_s() const { return std::max(layer_steps_s, transfer_s); }
};

struct TauChoice {
  int tau = 1;
  std::vector<TauCost> candidates;  // every tau priced, in the order tried
  std::string explain(const OffloadCosts& c) const;  // the inputs and the table, for the user
};

// Prices one tau: each layer starts from `slots` GPU slots filled by the trace's first step
// (as the engine's first refresh fills them), then runs the trace, refreshing at every block's
// first step and every tau steps inside a block (tau 0: never again).
TauCost price_tau(const RoutingTrace& trace, int slots, int tau, const OffloadCosts& c, bool lagged = false);

// Tries tau = 1 .. max_tau and 0 (never); the cheapest wins (ties: the larger tau, fewer copies).
TauChoice choose_tau(const RoutingTrace& trace, int slots, int max_tau, const OffloadCosts& c, bool lagged = false);

}  // namespace mosaic::offload
