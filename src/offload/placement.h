#pragma once
// Where each routed expert of one MoE layer runs when they do not all fit on the GPU (TIDE):
// `slots` experts hold a GPU copy, the rest run on the CPU from host memory. Plain data: the
// policies below move experts between the two and say which copies that takes; the engine
// does the copies. Routing never depends on the placement, so any placement gives the same
// tokens (up to the order of the fp32 sums).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mosaic::offload {

class LayerPlacement {
 public:
  // Experts 0 .. slots-1 start on the GPU (the official code's start; the first refresh
  // replaces them).
  LayerPlacement(int experts, int slots);

  int experts() const { return static_cast<int>(slot_of_.size()); }
  int slots() const { return static_cast<int>(expert_in_.size()); }
  bool resident(int e) const { return slot_of_[e] >= 0; }
  int slot_of(int e) const { return slot_of_[e]; }      // -1: on the CPU
  int expert_in(int slot) const { return expert_in_[slot]; }
  // `in` (on the CPU) takes the slot of `out` (resident); `out` leaves the GPU.
  void swap(int in, int out);

 private:
  std::vector<int32_t> slot_of_, expert_in_;
};

// One placement change: copy expert `promote`'s weights into the slot `demote` held.
struct Swap {
  int32_t promote = -1, demote = -1;
  bool operator==(const Swap&) const = default;
};

// The (row, expert) pairs routed to each expert in one step of one layer; ids [pairs].
std::vector<int64_t> count_routes(const int32_t* ids, int64_t pairs, int experts);

// TIDE's refresh from one step's routing: the target set is the `slots` experts with the most
// routed pairs (only experts with pairs; ties: residents, then lower id). Each target expert not resident is
// promoted (most pairs first), paired with a resident outside the target, the one with the
// fewest pairs first (ties: lower id), so a refresh copies as many experts in as it evicts and
// never more than it must. Residents beyond the pairs stay.
std::vector<Swap> plan_refresh(const LayerPlacement& p, const std::vector<int64_t>& counts);

// The fetch-on-miss baseline: every routed expert that is not resident is copied in before the
// step computes it, evicting the least recently used resident that this step does not route to
// (most pairs fetched first; ties: lower id). When every resident is routed this step, the rest
// of the misses run on the CPU.
class LruPlacement {
 public:
  explicit LruPlacement(int experts) : last_use_(static_cast<size_t>(experts), -1) {}
  std::vector<Swap> fetch(const LayerPlacement& p, const std::vector<int64_t>& counts);

 private:
  std::vector<int64_t> last_use_;  // the step each expert was last routed to, -1 never
  int64_t clock_ = 0;
};

// Applies swaps in order.
void apply_swaps(LayerPlacement& p, const std::vector<Swap>& swaps);

}  // namespace mosaic::offload
