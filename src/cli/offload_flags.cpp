#include "cli/offload_flags.h"

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "offload/measured_costs.h"

namespace mosaic::cli {

void add_offload_flags(CLI::App* c, OffloadFlags& f, bool policy) {
  const char* group = "Expert offload (MoE models; TIDE)";
  c->add_option("--gpu-experts", f.gpu_experts,
                "Routed experts per MoE layer with a GPU slot; the others run on the CPU from host memory. Default: all "
                "on the GPU (no offload)")
      ->group(group);
  c->add_option("--expert-budget", f.expert_budget,
                "Bytes of GPU expert slots in all (like 20GiB), instead of --gpu-experts: the slots per layer it holds")
      ->group(group);
  if (policy)
    c->add_option("--offload", f.policy,
                "Which experts hold the slots: tide (refresh from each step's routing at every block's first step and "
                "every --refresh-interval steps; the layer waits for the promoted experts' copies, with auto only for its "
                "busiest ones, as many as the cost model says pay: the others fly behind the step, their experts on "
                "the CPU at that step and on the GPU from the next) | tide-lagged (the same refresh with every copy "
                "behind the step) | static (the first step's choice, never refreshed) | lru (fetch "
                "every missed expert, evict the least recently used) | cpu (every routed expert on the CPU; "
                "--gpu-experts 0)")
      ->capture_default_str()
      ->group(group);
  c->add_option("--refresh-interval", f.refresh_interval,
                "tide, tide-lagged: steps between refreshes inside a block, or auto (the first block refreshes at every step and "
                "records its routing; a cost model of copies vs CPU time picks the interval from it, said on stderr)")
      ->capture_default_str()
      ->group(group);
  c->add_flag("--moe-stats", f.moe_stats,
              "Print per MoE layer: routed pairs, the GPU-resident hit rate, copies (and how many flew behind their "
              "step), and how many of a step's routed experts the previous step of its block routed too")
      ->group(group);
}

offload::OffloadOptions offload_options(const OffloadFlags& f) {
  offload::OffloadOptions o;
  o.policy = offload::parse_policy(f.policy);
  MOSAIC_CHECK(f.gpu_experts >= -1, "--gpu-experts must be >= 0 (got {})", f.gpu_experts);
  o.gpu_experts = f.gpu_experts;
  if (!f.expert_budget.empty()) o.expert_budget = static_cast<int64_t>(parse_memory(f.expert_budget, std::nullopt, "--expert-budget"));
  o.refresh_interval = offload::parse_refresh_interval(f.refresh_interval);
  return o;
}

double expert_bytes(const io::ModelConfig& c, size_t elem_bytes) {
  return 3.0 * static_cast<double>(c.d_model) * static_cast<double>(c.moe.ffn_hidden) * static_cast<double>(elem_bytes);
}

std::optional<int> offload_slots(const OffloadFlags& f, const io::ModelConfig& c, size_t weight_elem) {
  return offload::gpu_slots(offload_options(f), c, expert_bytes(c, weight_elem));
}

bool experts_on_host(const OffloadFlags& f, const io::ModelConfig& c, size_t weight_elem) {
  const std::optional<int> slots = offload_slots(f, c, weight_elem);
  return slots && *slots < c.moe.experts;
}

std::unique_ptr<offload::ExpertOffload> make_offload(const OffloadFlags& f, Model& m, const std::string& backend) {
  const offload::OffloadOptions o = offload_options(f);
  const io::ModelConfig& c = m.config();
  const std::optional<int> slots = offload_slots(f, c, m.backend().weight_elem_size());
  if (!slots) {
    MOSAIC_CHECK(!f.moe_stats || c.moe.experts > 0, "--moe-stats: {} has no routed experts", c.source);
    if (!f.moe_stats) return nullptr;
  }
  const std::vector<int> layers = c.moe_layers();
  const int experts = static_cast<int>(c.moe.experts);
  auto off = std::make_unique<offload::ExpertOffload>(o.policy, experts, slots.value_or(experts), layers,
                                                      o.refresh_interval);
  // auto prices tau and each refresh's copies against the CPU from measured costs (so where an
  // expert runs, and with it the rounding of bf16 sums, follows timing); a fixed interval waits
  // for every copy and repeats itself run to run.
  if (offload::refreshes_on_interval(o.policy) && o.refresh_interval == 0 && slots && *slots < experts) {
    off->set_costs(offload::measure_costs(m.backend(), c.d_model, c.moe.ffn_hidden));
    off->calibrate_cpu(true);
  }
  return off;
}

}  // namespace mosaic::cli
