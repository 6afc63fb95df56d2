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
      double serial = 0, longest = 0;  // this layer's CPU experts, one after another / the longest
      for (int e = 0; e < experts; ++e) {
        if (n[e] == 0) continue;
        const bool arriving =
            lagged && std::any_of(swaps.begin(), swaps.end(), [e](const Swap& w) { return w.promote == e; });
        if (p.resident(e) && !arriving) {
          cost.gpu_pairs += n[e];
        } else {
          cost.cpu_pairs += n[e];
          const double t = c.cpu_s_per_expert + static_cast<double>(n[e] - 1) * c.cpu_s_per_row;
          serial += t;
          longest = std::max(longest, t);
        }
      }
      cost.cpu_s += std::max(longest, serial / std::max(c.cpu_parallel_speedup, 1.0));
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
      "expert + {:.1f} us per further row, {:.1f}x in parallel{})\n",
      tau == 0 ? std::string("never") : std::to_string(tau), c.h2d_bytes_per_s / 1e9, c.expert_bytes / 1e6,
      c.cpu_s_per_expert * 1e6, c.cpu_s_per_row * 1e6, c.cpu_parallel_speedup,
      !candidates.empty() && candidates.front().lagged ? "; copies behind the steps: total = the longer of the two"
                                                       : "");
  s += "  tau    swaps   transfer ms   cpu pairs   cpu ms   total ms\n";
  for (const TauCost& t : candidates)
    s += fmt::format("  {:<5}  {:>5}   {:>11.2f}   {:>9}   {:>6.2f}   {:>8.2f}{}\n",
                     t.tau == 0 ? std::string("never") : std::to_string(t.tau), t.swaps, t.transfer_s * 1e3,
                     t.cpu_pairs, t.cpu_s * 1e3, t.total_s() * 1e3, t.tau == tau ? "  <-" : "");
  return s;
}

}  // namespace mosaic::offload
