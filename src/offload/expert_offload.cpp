#include "offload/expert_offload.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "core/error.h"
#include "io/model_config.h"

namespace mosaic::offload {

Policy parse_policy(const std::string& name) {
  if (name == "tide") return Policy::Tide;
  if (name == "tide-lagged") return Policy::TideLagged;
  if (name == "static") return Policy::Static;
  if (name == "lru") return Policy::Lru;
  if (name == "cpu") return Policy::Cpu;
  throw Error(fmt::format("--offload must be tide, tide-lagged, static, lru or cpu (got '{}')", name));
}

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::Tide: return "tide";
    case Policy::TideLagged: return "tide-lagged";
    case Policy::Static: return "static";
    case Policy::Lru: return "lru";
    case Policy::Cpu: return "cpu";
  }
  return "?";
}

bool refreshes_on_interval(Policy p) { return p == Policy::Tide || p == Policy::TideLagged; }

int parse_refresh_interval(const std::string& s) {
  if (s == "auto") return 0;
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  MOSAIC_CHECK(ec == std::errc() && end == s.data() + s.size() && v > 0,
               "--refresh-interval must be auto or a number of steps > 0 (got '{}')", s);
  return v;
}

std::optional<int> gpu_slots(const OffloadOptions& o, const io::ModelConfig& c, double expert_bytes) {
  const bool by_count = o.gpu_experts >= 0, by_budget = o.expert_budget >= 0;
  MOSAIC_CHECK(!(by_count && by_budget), "give --gpu-experts or --expert-budget, not both");
  if (!by_count && !by_budget) {
    MOSAIC_CHECK(refreshes_on_interval(o.policy), "--offload {} needs --gpu-experts N or --expert-budget BYTES",
                 policy_name(o.policy));
    return std::nullopt;
  }
  MOSAIC_CHECK(c.moe.experts > 0, "--gpu-experts / --expert-budget: {} has no routed experts (family {})",
               c.family, c.family);
  const int experts = static_cast<int>(c.moe.experts);
  const int moe_layers = static_cast<int>(c.moe_layers().size());
  int slots = 0;
  if (by_count) {
    MOSAIC_CHECK(o.gpu_experts <= experts, "--gpu-experts {} is more than the model's {} routed experts per layer",
                 o.gpu_experts, experts);
    slots = o.gpu_experts;
  } else {
    const double per_slot = expert_bytes * moe_layers;  // one slot in every MoE layer
    MOSAIC_CHECK(static_cast<double>(o.expert_budget) >= per_slot,
                 "--expert-budget {} B holds less than one expert per MoE layer ({} layers x {:.0f} B = {:.0f} B)",
                 o.expert_budget, moe_layers, expert_bytes, per_slot);
    slots = static_cast<int>(std::min<double>(experts, static_cast<double>(o.expert_budget) / per_slot));
  }
  if (o.policy == Policy::Cpu) {
    MOSAIC_CHECK(slots == 0, "--offload cpu runs every routed expert on the CPU: give --gpu-experts 0 (got {} slots)",
                 slots);
  }
  return slots;
}

ExpertOffload::ExpertOffload(Policy policy, int experts, int slots, std::vector<int> layers, int refresh_interval)
    : policy_(policy), experts_(experts), slots_(slots), tau_(refresh_interval), auto_tau_(refresh_interval == 0) {
  MOSAIC_CHECK(refresh_interval >= 0, "refresh interval {} must be >= 0 (0: auto)", refresh_interval);
  if (!refreshes_on_interval(policy)) tau_ = 0, auto_tau_ = false;
  for (int l : layers) layers_.push_back({l, LayerPlacement(experts, slots), LruPlacement(experts), {}, {}, {}});
}

ExpertOffload::Layer& ExpertOffload::at(int layer) {
  for (Layer& l : layers_)
    if (l.index == layer) return l;
  throw Error(fmt::format("offload: layer {} has no routed experts", layer));
}
const ExpertOffload::Layer& ExpertOffload::at(int layer) const { return const_cast<ExpertOffload*>(this)->at(layer); }

std::vector<int> ExpertOffload::layers() const {
  std::vector<int> v;
  for (const Layer& l : layers_) v.push_back(l.index);
  return v;
}

void ExpertOffload::end_of_trace_step() {
  if (!auto_tau_ || choice_ || layers_.empty() || layers_.front().step_counts.empty()) return;
  std::vector<std::vector<int64_t>> counts;
  for (Layer& l : layers_) counts.push_back(std::move(l.step_counts)), l.step_counts.clear();
  trace_.add(step_in_block_, std::move(counts));
}

void ExpertOffload::begin_step(int step_in_block) {
  MOSAIC_CHECK(step_in_block >= 0, "offload: step {} in a block", step_in_block);
  if (steps_ > 0) end_of_trace_step();
  if (step_in_block == 0) ++blocks_;
  // auto: the first block refreshes at every step and records its routing; the second block's
  // first step prices every tau on that trace and keeps the cheapest.
  if (auto_tau_ && !choice_ && blocks_ == 2 && step_in_block == 0) {
    choice_ = choose_tau(trace_, slots_, std::max(1, static_cast<int>(trace_.counts.size())), costs_,
                         policy_ == Policy::TideLagged);
    tau_ = choice_->tau;
  }
  step_in_block_ = step_in_block;
  ++steps_;
}

bool ExpertOffload::refresh_now() const {
  switch (policy_) {
    case Policy::Tide:
    case Policy::TideLagged:
      if (auto_tau_ && !choice_) return true;  // tracing the first block
      return step_in_block_ == 0 || (tau_ > 0 && step_in_block_ % tau_ == 0);
    case Policy::Static: return steps_ == 1;
    case Policy::Lru:
    case Policy::Cpu: return false;
  }
  return false;
}

std::vector<Swap> ExpertOffload::route(int layer, const std::vector<int64_t>& counts, bool first_chunk) {
  Layer& l = at(layer);
  MOSAIC_CHECK(static_cast<int>(counts.size()) == experts_, "offload: {} counts for {} experts", counts.size(),
               experts_);
  LayerStats& s = l.stats;
  const bool again = l.last_step == steps_;
  // The call's pairs into the stats, and its CPU part (for observe_cpu), in one pass.
  auto count_pairs = [&] {
    l.cpu_experts = l.cpu_pairs = l.cpu_longest = 0;
    for (int e = 0; e < experts_; ++e) {
      if (counts[e] == 0) continue;
      s.pairs += counts[e];
      if (on_gpu(layer, e)) s.gpu_pairs += counts[e];
      else ++l.cpu_experts, l.cpu_pairs += counts[e], l.cpu_longest = std::max(l.cpu_longest, counts[e]);
    }
  };
  l.last_step = steps_;
  if (!first_chunk || again) {
    l.landed = false;  // the step's first call waited for them already
    count_pairs();
    if (auto_tau_ && !choice_)
      for (int e = 0; e < experts_; ++e) l.step_counts[e] += counts[e];
    return {};
  }
  // A new step: what the previous refresh sent is in place now.
  l.landed = !l.arriving.empty();
  l.arriving.clear();
  std::vector<Swap> swaps;
  if (slots_ > 0) {
    if (policy_ == Policy::Lru) swaps = l.lru.fetch(l.placement, counts);
    else if (refresh_now()) swaps = plan_refresh(l.placement, counts);
    apply_swaps(l.placement, swaps);
  }
  if (refreshes_on_interval(policy_) && !swaps.empty()) {
    // The copies the layer waits for (the first ones: most pairs); the rest fly behind the step.
    const CopySplit split = split_refresh(l.placement, swaps, counts, costs_, policy_ == Policy::TideLagged);
    for (size_t k = static_cast<size_t>(split.waited); k < swaps.size(); ++k) l.arriving.push_back(swaps[k].promote);
  }
  if (auto_tau_ && !choice_) l.step_counts = counts;

  ++s.steps;
  s.swaps += static_cast<int64_t>(swaps.size());
  s.behind += static_cast<int64_t>(l.arriving.size());
  count_pairs();
  int64_t routed = 0, kept = 0;
  for (int e = 0; e < experts_; ++e) {
    if (counts[e] == 0) continue;
    ++routed;
    kept += !l.prev_routed.empty() && l.prev_routed[e];
  }
  if (step_in_block_ > 0 && !l.prev_routed.empty() && routed > 0) {
    s.overlap_sum += static_cast<double>(kept) / static_cast<double>(routed);
    ++s.overlap_steps;
  }
  l.prev_routed.assign(counts.size(), 0);
  for (int e = 0; e < experts_; ++e) l.prev_routed[e] = counts[e] > 0;
  return swaps;
}

void ExpertOffload::observe_cpu(int layer, double seconds) {
  const Layer& l = at(layer);
  if (!calibrate_ || !costs_.priced() || seconds <= 0 || l.cpu_experts == 0) return;
  // The cost model's time for this part (cpu_seconds), solved for the cost of one expert.
  const double p = std::max(costs_.cpu_parallel_speedup, 1.0), n = static_cast<double>(l.cpu_experts);
  const double sample =
      n <= p ? seconds - static_cast<double>(l.cpu_longest - 1) * costs_.cpu_s_per_row
             : (seconds * p - static_cast<double>(l.cpu_pairs - l.cpu_experts) * costs_.cpu_s_per_row) / n;
  if (sample <= 0) return;
  // The first observation replaces the measurement; later ones move it by a twentieth.
  costs_.cpu_s_per_expert =
      costs_.cpu_observations == 0 ? sample : 0.95 * costs_.cpu_s_per_expert + 0.05 * sample;
  ++costs_.cpu_observations;
}

bool ExpertOffload::on_gpu(int layer, int e) const {
  const Layer& l = at(layer);
  return l.placement.resident(e) && std::find(l.arriving.begin(), l.arriving.end(), e) == l.arriving.end();
}

std::string ExpertOffload::report() const {
  std::string s = fmt::format("moe stats: offload {}, {} of {} routed experts per layer on the GPU{}\n",
                              policy_name(policy_), slots_, experts_,
                              refreshes_on_interval(policy_)
                                  ? fmt::format(", refresh interval {}", tau_ == 0 ? std::string("auto (not chosen yet)")
                                                                                   : std::to_string(tau_))
                                  : std::string());
  s += "  layer   steps   routed pairs   GPU hit rate   copies   behind   overlap with the previous step\n";
  LayerStats all;
  for (const Layer& l : layers_) {
    const LayerStats& t = l.stats;
    s += fmt::format("  {:>5}   {:>5}   {:>12}   {:>12.3f}   {:>6}   {:>6}   {:.3f}\n", l.index, t.steps, t.pairs,
                     t.hit_rate(), t.swaps, t.behind, t.overlap());
    all.steps += t.steps, all.pairs += t.pairs, all.gpu_pairs += t.gpu_pairs, all.swaps += t.swaps;
    all.behind += t.behind, all.overlap_sum += t.overlap_sum, all.overlap_steps += t.overlap_steps;
  }
  s += fmt::format("  all     {:>5}   {:>12}   {:>12.3f}   {:>6}   {:>6}   {:.3f}\n", steps_, all.pairs,
                   all.hit_rate(), all.swaps, all.behind, all.overlap());
  return s;
}

}  // namespace mosaic::offload
