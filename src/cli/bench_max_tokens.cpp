// mosaic bench --max-tokens: the plan search for the longest sequence whose step fits the
// activation budget, and the length at which a real step confirms it.
#include <fmt/format.h>

#include <chrono>

#include "cli/bench_internal.h"
#include "core/format.h"
#include "plan/memory_plan.h"

namespace mosaic::cli {

int64_t plan_max_tokens(Session& s, const BenchFlags& f, nlohmann::json& out) {
  Model& m = s.model();
  const Graph& g = m.graph();
  auto t0 = std::chrono::steady_clock::now();
  int64_t fit = max_tokens_that_fit(g, f.block_length, s.backend().traits().act_size, m.activation_budget());
  double search_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(stderr, "mosaic: plan search: the largest L whose step fits {} of activations is {} ({:.0f} ms)\n",
             human_bytes(static_cast<double>(m.activation_budget())), fit, search_ms);
  out["max_tokens_planned"] = fit;
  // Confirmed by a real step (at --confirm-tokens instead, when a step at the planned
  // maximum would take too long to wait for).
  return f.confirm_tokens > 0 ? f.confirm_tokens : fit;
}

}  // namespace mosaic::cli
