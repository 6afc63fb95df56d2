#pragma once
// The expert offload of one model (TIDE): its options, one placement per MoE layer, the policy
// that moves experts between the GPU slots and the CPU as steps route tokens, and what it saw
// (hit rates, copies, the stability of routed sets). The executor asks it, at every MoE layer
// of every step, which experts run where; it never changes the routing.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "offload/placement.h"
#include "offload/refresh_interval.h"

namespace mosaic {
namespace io {
struct ModelConfig;
}

namespace offload {

enum class Policy {
  Tide,        // refresh at every block's first step and every tau steps inside a block; the
               // layer waits for the copies of its busiest promoted experts, as many as the
               // measured costs say pay (all of them, as TIDE's public code does, when unmeasured);
               // the rest fly behind the step and their experts run on the CPU until they land
  TideLagged,  // the same refresh, every copy behind the step: a promoted expert runs on the CPU
               // at the step that promotes it and on the GPU from the layer's next step on
  Static,  // the placement the first step chose, never refreshed (tau = infinity)
  Lru,     // fetch every missed expert before computing it, evicting the least recently used
  Cpu,     // every routed expert on the CPU (llama.cpp's --cpu-moe)
};
Policy parse_policy(const std::string& name);  // tide | tide-lagged | static | lru | cpu
const char* policy_name(Policy p);
// TIDE's interval refresh (tide, tide-lagged): tau applies.
bool refreshes_on_interval(Policy p);

struct OffloadOptions {
  Policy policy = Policy::Tide;
  int gpu_experts = -1;        // routed experts on the GPU per MoE layer; -1: every one (no offload)
  int64_t expert_budget = -1;  // bytes for GPU expert slots in all, instead of gpu_experts; -1: unset
  int refresh_interval = 0;    // tau in steps; 0: auto (the cost model picks it after the first block)
};

// The options' checks against a model, with the flag named in every error; returns the GPU
// slots per MoE layer (from --gpu-experts or --expert-budget), or nullopt when nothing is offloaded.
// expert_bytes: one routed expert's weights on the backend.
std::optional<int> gpu_slots(const OffloadOptions& o, const io::ModelConfig& c, double expert_bytes);
// Parses --refresh-interval: "auto" or a positive number of steps.
int parse_refresh_interval(const std::string& s);

// Per MoE layer, over a run.
struct LayerStats {
  int64_t steps = 0, pairs = 0, gpu_pairs = 0, swaps = 0;
  int64_t behind = 0;  // of the swaps, the copies that flew behind their step
  // Of the experts a step routes to, the fraction the previous step of the same block routed to
  // too, summed over steps that have a previous one.
  double overlap_sum = 0;
  int64_t overlap_steps = 0;
  double hit_rate() const { return pairs ? static_cast<double>(gpu_pairs) / static_cast<double>(pairs) : 0; }
  double overlap() const { return overlap_steps ? overlap_sum / static_cast<double>(overlap_steps) : 0; }
};

class ExpertOffload {
 public:
  // layers: the model's MoE layer indices; slots: GPU slots per layer.
  ExpertOffload(Policy policy, int experts, int slots, std::vector<int> layers, int refresh_interval);

  // Called before each step: its index inside its block (0: a block starts).
  void begin_step(int step_in_block);
  // This step's routed pairs per expert in `layer`: moves experts per the policy and returns the
  // copies to make (each into the slot the demoted expert held) before the layer computes.
  // first_chunk false, or a second call for the layer in the same step (a chunked region's later
  // chunks, guidance's second trunk): moves nothing and only adds to the counts.
  std::vector<Swap> route(int layer, const std::vector<int64_t>& counts, bool first_chunk = true);
  const LayerPlacement& placement(int layer) const { return at(layer).placement; }
  // tide, tide-lagged: the experts promoted at this step of `layer` whose copies fly behind it
  // (resident in the placement, but the step runs them on the CPU); empty under the others.
  const std::vector<int32_t>& arriving(int layer) const { return at(layer).arriving; }
  // Whether `e` runs on the GPU at this step of `layer`: resident and not arriving.
  bool on_gpu(int layer, int e) const;
  // True at the step after a refresh that sent copies behind: the layer must wait for them
  // before its device part reads the slots.
  bool landed(int layer) const { return at(layer).landed; }

  Policy policy() const { return policy_; }
  int slots() const { return slots_; }
  int experts() const { return experts_; }
  // tau in use; 0 before auto has chosen, or under a policy that does not refresh on a clock.
  int refresh_interval() const { return tau_; }
  // auto: the costs the choice is priced with (measured by the engine) and the choice, once made.
  void set_costs(const OffloadCosts& c) { costs_ = c; }
  // On: each layer-step's CPU time (observe_cpu) moves the CPU cost per expert toward what the
  // run shows (the measurement before the run times the kernel alone, warm; in a step its
  // threads wake up, and its weights come cold from memory while copies fly).
  void calibrate_cpu(bool on) { calibrate_ = on; }
  // The wall time of the CPU part of `layer`'s last call to route().
  void observe_cpu(int layer, double seconds);
  const std::optional<TauChoice>& tau_choice() const { return choice_; }
  const OffloadCosts& costs() const { return costs_; }

  std::vector<int> layers() const;
  const LayerStats& stats(int layer) const { return at(layer).stats; }
  // The stats table (per layer and in all), for --moe-stats.
  std::string report() const;

 private:
  struct Layer {
    int index;
    LayerPlacement placement;
    LruPlacement lru;
    LayerStats stats;
    std::vector<uint8_t> prev_routed;  // the previous step's routed experts (this block)
    std::vector<int64_t> step_counts;  // this step's, for the auto trace
    std::vector<int32_t> arriving;     // promoted at this step, copies behind it
    bool landed = false;               // the previous refresh's copies behind are used now
    int64_t last_step = -1;            // the step that last routed here
    int64_t cpu_experts = 0, cpu_pairs = 0, cpu_longest = 0;  // the last call's CPU part
  };
  Layer& at(int layer);
  const Layer& at(int layer) const;
  bool refresh_now() const;
  void end_of_trace_step();

  Policy policy_;
  int experts_, slots_, tau_;
  bool auto_tau_;
  std::vector<Layer> layers_;
  int step_in_block_ = 0;
  int64_t steps_ = 0, blocks_ = 0;
  OffloadCosts costs_;
  bool calibrate_ = false;
  RoutingTrace trace_;  // auto: the first block's routing, refreshed at every step
  std::vector<std::vector<int64_t>> pending_;  // this step's counts per layer, while tracing
  std::optional<TauChoice> choice_;
};

}  // namespace offload
}  // namespace mosaic
