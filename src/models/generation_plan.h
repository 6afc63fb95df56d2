#pragma once
// The memory of a whole cached generation, planned before it starts: every kind of step it
// takes (a cache-storing step over the whole sequence, cached steps over the block), each
// with the caches as persistent tensors of its plan. A generation fits when every kind of
// step does; this is what `info --cache` reports and what generate checks up front.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "models/blocks.h"
#include "plan/memory_plan.h"

namespace mosaic {

struct GenerationShape {
  int64_t tokens = 0;   // the whole sequence: prompt + generated
  int64_t block = 0;    // rows of a block
  int64_t masked = 0;   // head rows of a whole-sequence step (at most the block's on a cached one)
};

struct StepKindPlan {
  CacheStep step = CacheStep::Full;
  Dims dims;
  std::optional<MemoryPlan> plan;  // nullopt: does not fit the budget
};

struct GenerationPlan {
  std::vector<StepKindPlan> steps;
  size_t cache_bytes = 0;  // the persistent caches, all layers (and both trunks when guided)
  size_t arena_bytes = 0;  // the largest step's arena (caches included)
  bool fits = false;
};

// The plan every rank of a step sharded across `ranks` fits in: the longest shard's rows, with
// as many of the `masked` head rows as it holds, and every row's keys (K = tokens).
Dims sharded_step_dims(int64_t tokens, int64_t masked, int ranks);

// `base` carries everything but the cache fields (guidance, fused q/k/v, traits, ...).
struct GenerationPlanner {
  const io::ModelConfig& config;
  GraphOptions base;
  CacheOptions cache;
  size_t budget = SIZE_MAX;
  int64_t tame_min_rows = kTameMinRows;
  double tame_target = kTameTarget;
  // > 0: every step's rows are sharded across this many ranks (Model::set_shards, no cache):
  // the plan is one rank's, the longest shard's, holding as many head rows as fit in it.
  int ranks = 0;

  // The step kinds a generation with this cache takes, and the dims each runs with. A prefix
  // cache's cached steps are planned at their largest (the first block: up to every row).
  std::vector<std::pair<CacheStep, Dims>> step_dims(const GenerationShape& s) const;
  GenerationPlan plan(const GenerationShape& s) const;
  // The longest sequence (prompt + generated) whose generation fits, keeping the block and
  // head rows; 0 when none does.
  int64_t max_tokens(const GenerationShape& s) const;
};

// One line: "the dual-cache generation of 4096 tokens needs 12.3 GiB (caches 8 GiB) of a
// 10 GiB budget; the longest that fits is 3328 tokens".
std::string describe_misfit(const GenerationPlanner& p, const GenerationShape& s, const GenerationPlan& plan);

}  // namespace mosaic
