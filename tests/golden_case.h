#pragma once
// Golden cases of goldens.json files as the sampler options they were generated with.
#include <nlohmann/json.hpp>

#include "decode/dream_sampler.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"

namespace mosaic::test {

inline GenerateOptions golden_options(const nlohmann::json& c) {
  GenerateOptions o;
  o.gen_length = c["gen_length"];
  o.steps = c["steps"];
  o.block_length = c["block_length"];
  o.temperature = c["temperature"];
  o.cfg_scale = c["cfg_scale"];
  o.remasking = parse_remasking(c["remasking"]);
  o.seed = c["seed"];
  return o;
}

// A case of tests/fixtures/dream_tiny/goldens.json (tools/reference/make_dream_fixtures.py).
inline DreamOptions dream_golden_options(const nlohmann::json& c) {
  DreamOptions o;
  o.gen_length = c["gen_length"];
  o.steps = c["steps"];
  o.block_length = c["block_length"];
  o.alg = parse_dream_alg(c["alg"]);
  o.temperature = c["temperature"];
  if (!c["top_p"].is_null()) o.top_p = c["top_p"];
  if (!c["top_k"].is_null()) o.top_k = c["top_k"];
  if (!c["alg_temp"].is_null()) o.alg_temp = c["alg_temp"];
  o.eps = c["eps"];
  o.seed = c["seed"];
  return o;
}

// A case of tests/fixtures/llada2_tiny/goldens.json (tools/reference/make_llada2_fixtures.py).
inline Llada2Options llada2_golden_options(const nlohmann::json& c) {
  Llada2Options o;
  o.gen_length = c["gen_length"];
  o.block_length = c["block_length"];
  o.steps = c["steps"];
  o.threshold = c["threshold"];
  o.temperature = c["temperature"];
  o.top_k = c["top_k"].is_null() ? 0 : c["top_k"].get<int64_t>();
  o.top_p = c["top_p"].is_null() ? 1.0 : c["top_p"].get<double>();
  o.minimal_topk = c["minimal_topk"];
  o.eos_early_stop = c["eos_early_stop"];
  o.seed = c["seed"];
  return o;
}

// LLaDA2.0's exact prefix cache on one golden case: its tokens, the rows each forward ran, and
// the rows the reference's cached variant ran (the case's trace, cached_rows).
struct PrefixCacheRun {
  std::vector<int32_t> tokens;
  std::vector<int64_t> rows_run, rows_want;
};
inline PrefixCacheRun run_llada2_prefix_cache(Model& m, const nlohmann::json& c) {
  Llada2Options o = llada2_golden_options(c);
  o.cache = CacheMode::Prefix;
  PrefixCacheRun run;
  auto on_step = [&](const StepEvent& e, const std::vector<int32_t>&) {
    if (e.ran_model) run.rows_run.push_back(e.stats.rows);
  };
  run.tokens = llada2_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o, on_step).tokens;
  for (const nlohmann::json& t : c["trace"])
    run.rows_want.push_back(t["cached_rows"][1].get<int64_t>() - t["cached_rows"][0].get<int64_t>());
  return run;
}

// The cache fields of a cache_goldens.json case (tools/reference/make_cache_fixtures.py).
inline CacheOptions golden_cache(const nlohmann::json& c) {
  return {parse_cache_mode(c["cache"]), c["sparse_keep"].get<double>(), c["sparse_kernel"].get<int>()};
}
inline double golden_threshold(const nlohmann::json& c) {
  return c["threshold"].is_null() ? 0.0 : c["threshold"].get<double>();
}

}  // namespace mosaic::test
