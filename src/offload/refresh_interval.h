#pragma once
// TIDE's refresh interval tau from a cost model: refreshing more often keeps more of each step's
// routed pairs on the GPU (less CPU time) but copies more experts over PCIe. The model replays
// a routing trace (the routed pairs per expert of each MoE layer at each step) under each
// candidate tau with the same refresh rule the engine runs (placement.h), and prices what it
// sees: every promoted expert's bytes over the measured host-to-device bandwidth, every layer's
// CPU experts at the measured CPU cost (in parallel, at the measured speedup). The tau with the
// least transfer + CPU time wins. Lagged (tide-lagged): the copies run behind the steps, so a step
// costs the longer of the two, and a promoted expert's pairs run on the CPU at the refresh step.
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
};

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
  int64_t swaps = 0, gpu_pairs = 0, cpu_pairs = 0;
  bool lagged = false;
  double total_s() const { return lagged ? std::max(transfer_s, cpu_s) : transfer_s + cpu_s; }
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
