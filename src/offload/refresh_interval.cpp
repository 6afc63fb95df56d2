#include "offload/refresh_interval.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace mosaic::offload {

void RoutingTrace::add(int step, std::vector<std::vector<int64_t>> layer_counts) {
  MOSAIC_CHECK(counts.empty() || layer_counts.size() == counts.front().size(),
               "routing trace: a step with {} layers after steps with {}", layer_counts.size(),
               counts.front().size());
  step_in_block.push_back(step);
  counts.push_back(std::move(layer_counts));
}

double cpu_seconds(const std::vector<int64_t>& pairs_per_expert, const OffloadCosts& c) {
  double serial = 0, longest = 0;
  for (int64_t n : pairs_per_expert) {
    if (n <= 0) continue;
    const double t = c.cpu_s_per_expert + static_cast<double>(n - 1) * c.cpu_s_per_row;
    serial += t;
    longest = std::max(longest, t);
  }
  return std::max(longest, serial / std::max(c.cpu_parallel_speedup, 1.0));
}

CopySplit split_copies(const std::vector<int64_t>& promoted, const std::vector<int64_t>& other_cpu,
                       const OffloadCosts& c, bool lagged) {
  const int n = static_cast<int>(promoted.size());
  const double copy_s = c.priced() ? c.expert_bytes / c.h2d_bytes_per_s : 0;
  auto cost = [&](int waited) {
    std::vector<int64_t> cpu = other_cpu;
    cpu.insert(cpu.end(), promoted.begin() + waited, promoted.end());
    const double t = cpu_seconds(cpu, c);
    return CopySplit{waited, std::max(waited * copy_s, t), t};
  };
  if (lagged) return cost(0);
  CopySplit best = cost(n);
  if (!c.priced()) return best;
  // The CPU's time only grows as fewer copies are waited for: from all of them down.
  for (int w = n - 1; w >= 0; --w) {
    const CopySplit s = cost(w);
    if (s.seconds < best.seconds) best = s;
  }
  return best;
}

CopySplit split_refresh(const LayerPlacement& p, const std::vector<Swap>& swaps, const std::vector<int64_t>& counts,
                        const OffloadCosts& c, bool lagged) {
  std::vector<int64_t> promoted, other_cpu;
  for (const Swap& w : swaps) promoted.push_back(counts[w.promote]);
  for (size_t e = 0; e < counts.size(); ++e)
    if (counts[e] > 0 && !p.resident(static_cast<int>(e))) other_cpu.push_back(counts[e]);
  return split_copies(promoted, other_cpu, c, lagged);
}

TauCost price_tau(const RoutingTrace& trace, int slots, int tau, const OffloadCosts& c, bool lagged) {
  MOSAIC_CHECK(tau >= 0, "refresh interval {} must be >= 0", tau);
  TauCost cost;
  cost.tau = tau;
  cost.lagged = lagged;
  if (trace.counts.empty()) return cost;
  const int experts = static_cast<int>(trace.counts.front().front().size());
  for (int l = 0; l < trace.layers(); ++l) {
    LayerPlacement p(experts, slots);
    apply_swaps(p, plan_refresh(p, trace.counts.front()[l]));  // the first refresh is not priced: every tau makes it
    for (size_t i = 0; i < trace.counts.size(); ++i) {
      const std::vector<int64_t>& n = trace.counts[i][l];
      const int s = trace.step_in_block[i];
      const bool refresh = i > 0 && (s == 0 || (tau > 0 && s % tau == 0));
      std::vector<Swap> swaps;
      if (refresh) {
        swaps = plan_refresh(p, n);
        cost.swaps += static_cast<int64_t>(swaps.size());
        cost.transfer_s += static_cast<double>(swaps.size()) * c.expert_bytes / c.h2d_bytes_per_s;
        apply_swaps(p, swaps);
      }
      for (int e = 0; e < experts; ++e) (p.resident(e) ? cost.gpu_pairs : cost.cpu_pairs) += n[e];
      const CopySplit split = split_refresh(p, swaps, n, c, lagged);
      for (size_t k = static_cast<size_t>(split.waited); k < swaps.size(); ++k)
        cost.gpu_pairs -= n[swaps[k].promote], cost.cpu_pairs += n[swaps[k].promote];
      cost.waited += split.waited;
      cost.cpu_s += split.cpu_s;
      cost.layer_steps_s += split.seconds;
    }
  }
  return cost;
}

TauChoice choose_tau(const RoutingTrace& trace, int slots, int max_tau, const OffloadCosts& c, bool lagged) {
  MOSAIC_CHECK(c.h2d_bytes_per_s > 0 && c.expert_bytes > 0, "refresh interval: the cost model needs the host-to-"
               "device bandwidth and the expert size (got {} B/s, {} B)", c.h2d_bytes_per_s, c.expert_bytes);
  MOSAIC_CHECK(max_tau >= 1, "refresh interval: max tau {} must be >= 1", max_tau);
  TauChoice choice;
  for (int tau = 1; tau <= max_tau; ++tau) choice.candidates.push_back(price_tau(trace, slots, tau, c, lagged));
  choice.candidates.push_back(price_tau(trace, slots, 0, c, lagged));
  const TauCost* best = &choice.candidates.front();
  for (const TauCost& t : choice.candidates)
    if (t.total_s() <= best->total_s()) best = &t;
  choice.tau = best->tau;
  return choice;
}

std::string TauChoice::explain(const OffloadCosts& c) const {
  std::string s = fmt::format(
      "refresh interval: tau {} (cost model inputs: host-to-device {:.2f} GB/s, expert {:.2f} MB, CPU {:.1f} us per "
      "expert{} + {:.1f} us per further row, {:.1f}x in parallel; a layer-step costs the longer of the copies it "
      "waits for and its CPU time{})\n",
      tau == 0 ? std::string("never") : std::to_string(tau), c.h2d_bytes_per_s / 1e9, c.expert_bytes / 1e6,
      c.cpu_s_per_expert * 1e6,
      c.cpu_observations ? fmt::format(" (as run in {} layer-steps)", c.cpu_observations) : std::string(),
      c.cpu_s_per_row * 1e6, c.cpu_parallel_speedup,
      !candidates.empty() && candidates.front().lagged ? ", and it waits for none" : "");
  s += "  tau    swaps  waited   transfer ms   cpu pairs   cpu ms   layer-steps ms   total ms\n";
  for (const TauCost& t : candidates)
    s += fmt::format("  {:<5}  {:>5}  {:>6}   {:>11.2f}   {:>9}   {:>6.2f}   {:>14.2f}   {:>8.2f}{}\n",
                     t.tau == 0 ? std::string("never") : std::to_string(t.tau), t.swaps, t.waited,
                     t.transfer_s * 1e3, t.cpu_pairs, t.cpu_s * 1e3, t.layer_steps_s * 1e3, t.total_s() * 1e3,
                     t.tau == tau ? "  <-" : "");
  return s;
}

}  // namespace mosaic::offload
