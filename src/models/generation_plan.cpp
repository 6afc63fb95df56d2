#include "models/generation_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "core/format.h"
#include "models/family.h"

namespace mosaic {

Dims sharded_step_dims(int64_t tokens, int64_t masked, int ranks) {
  const int64_t rows = (tokens + ranks - 1) / ranks;
  return Dims{rows, std::min(masked, rows), tokens, 0};
}

std::vector<std::pair<CacheStep, Dims>> GenerationPlanner::step_dims(const GenerationShape& s) const {
  const int64_t B = std::min(s.block, s.tokens);
  const Dims whole{s.tokens, std::min(s.masked, s.tokens), cache_rows(cache, s.tokens, B), B};
  MOSAIC_CHECK(ranks <= 0 || cache.mode == CacheMode::None, "a step sharded across {} ranks runs without a cache",
               ranks);
  if (ranks > 0) return {{CacheStep::Full, sharded_step_dims(s.tokens, whole.M, ranks)}};
  switch (cache.mode) {
    case CacheMode::None: return {{CacheStep::Full, Dims{s.tokens, whole.M}}};
    case CacheMode::Prefix: {
      Dims run = whole;
      run.M = std::min(whole.M, B);
      return {{CacheStep::Store, whole}, {CacheStep::Cached, run}};
    }
    case CacheMode::Dual:
    case CacheMode::Sparse: {
      Dims run = whole;
      run.L = B;
      run.M = std::min(whole.M, B);
      if (cache.mode == CacheMode::Dual) return {{CacheStep::Store, whole}, {CacheStep::Cached, run}};
      return {{CacheStep::Full, whole}, {CacheStep::Store, whole}, {CacheStep::Cached, run}};
    }
  }
  return {};
}

GenerationPlan GenerationPlanner::plan(const GenerationShape& s) const {
  GenerationPlan gp;
  gp.fits = true;
  for (const auto& [step, d] : step_dims(s)) {
    GraphOptions o = base;
    o.sharded = ranks > 0;
    o.cache = cache.mode;
    o.cache_step = step;
    if (cache.mode == CacheMode::Sparse && step == CacheStep::Store) {
      o.sparse_keep = cache.sparse_keep;
      o.sparse_kernel = cache.sparse_kernel;
    }
    const Graph g = build_step_graph(config, o);
    size_t caches = 0;
    for (const TensorDesc& t : g.tensors)
      if (t.kind == TensorKind::Persistent)
        caches += static_cast<size_t>(t.rows.eval(d) * t.cols.eval(d)) * elem_size(t.elem, base.traits.act_size);
    gp.cache_bytes = std::max(gp.cache_bytes, caches);
    StepKindPlan k{step, d, try_plan_for_budget(g, d, base.traits.act_size, budget, tame_min_rows, tame_target)};
    if (k.plan) {
      gp.arena_bytes = std::max(gp.arena_bytes, k.plan->arena_bytes());
    } else {
      gp.fits = false;
    }
    gp.steps.push_back(std::move(k));
  }
  return gp;
}

int64_t GenerationPlanner::max_tokens(const GenerationShape& s) const {
  // Searched without the taming goal, for speed, as max_tokens_that_fit is.
  GenerationPlanner fast = *this;
  fast.tame_target = 0.0;
  auto fits = [&](int64_t n) {
    GenerationShape t = s;
    t.tokens = n;
    return fast.plan(t).fits;
  };
  return largest_fitting(std::max<int64_t>(s.block + 1, 2), s.tokens, fits);
}

std::string describe_misfit(const GenerationPlanner& p, const GenerationShape& s, const GenerationPlan& plan) {
  const int64_t longest = p.max_tokens(s);
  const std::string kind = p.cache.mode == CacheMode::None ? "" : cache_mode_name(p.cache.mode) + "-cache ";
  const std::string caches =
      plan.cache_bytes ? fmt::format(" (its caches alone: {})", human_bytes(static_cast<double>(plan.cache_bytes))) : "";
  return fmt::format("a {}generation of {} tokens (blocks of {}) does not fit the {} activation budget{}; the largest L "
                     "that fits is {} tokens",
                     kind, s.tokens, s.block, human_bytes(static_cast<double>(p.budget)), caches, longest);
}

}  // namespace mosaic
