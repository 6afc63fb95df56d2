// Cached decoding on the CPU against the PyTorch reference (tools/reference/cached_generate.py):
// Fast-dLLM's prefix and dual caches, Sparse-dLLM's sparse cache and threshold decoding, for
// LLaDA and Dream, token for token (cache_goldens.json, float64 reference, margins > 1e-5).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/dream_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "models/generation_plan.h"
#include "models/model.h"
#include "test_util.h"

namespace mosaic {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json cache_goldens(const char* fixture) {
  return json::parse(test::read_file(test::fixtures_dir() / fixture / "cache_goldens.json"));
}

// The model steps a generation ran, by kind: a cached step must have run when the case has any.
struct Kinds {
  int full = 0, store = 0, cached = 0;
};
StepCallback count_kinds(Kinds& k) {
  return [&k](const StepEvent& ev, const std::vector<int32_t>&) {
    if (!ev.ran_model) return;
    (ev.cache_step == CacheStep::Store ? k.store : ev.cache_step == CacheStep::Cached ? k.cached : k.full) += 1;
  };
}

void expect_kinds(const json& c, const Kinds& k) {
  int cached = 0, store = 0;
  for (const json& t : c["trace"]) {
    cached += t["kind"] == "cached";
    store += t["kind"] == "store";
  }
  EXPECT_EQ(k.store, store) << c["name"];
  EXPECT_EQ(k.cached > 0, cached > 0) << c["name"] << ": the reference ran " << cached << " cached steps";
}

TEST(CacheGolden, LladaEveryCaseEqualsTheReference) {
  const json g = cache_goldens("llada_tiny");
  ASSERT_GE(g["cases"].size(), 20u);
  auto be = make_cpu_backend();
  Model m((test::fixtures_dir() / "llada_tiny").string(), *be);
  for (const json& c : g["cases"]) {
    GenerateOptions o = test::golden_options(c);
    o.cache = test::golden_cache(c);
    o.threshold = test::golden_threshold(c);
    Kinds k;
    GenerateResult r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o, count_kinds(k));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << c["name"];
    expect_kinds(c, k);
  }
}

TEST(CacheGolden, DreamEveryCaseEqualsTheReference) {
  const json g = cache_goldens("dream_tiny");
  ASSERT_GE(g["cases"].size(), 15u);
  auto be = make_cpu_backend();
  Model m((test::fixtures_dir() / "dream_tiny").string(), *be);
  for (const json& c : g["cases"]) {
    DreamOptions o = test::dream_golden_options(c);
    o.cache = test::golden_cache(c);
    o.threshold = test::golden_threshold(c);
    Kinds k;
    GenerateResult r = dream_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o, count_kinds(k));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << c["name"];
    expect_kinds(c, k);
  }
}

// The smallest activation budget (to 1/64 of the unchunked arena) under which the model
// plans every kind of step of this generation: run there, the steps are split into chunks.
size_t tightest_budget(Model& m, const CacheOptions& cache, const GenerationShape& shape, bool guided) {
  auto fits = [&](size_t budget) {
    m.set_activation_budget(budget);
    try {
      m.check_generation(cache, shape, guided);
      return true;
    } catch (const OutOfBudget&) {
      return false;
    }
  };
  m.set_activation_budget(SIZE_MAX);
  size_t hi = m.check_generation(cache, shape, guided).arena_bytes, lo = 0;
  const size_t tol = std::max<size_t>(hi / 64, 1);
  while (hi - lo > tol) {
    const size_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? hi : lo) = mid;
  }
  m.set_activation_budget(hi);
  return hi;
}

// The same cases at the tightest budget their generation plans under: the store step's
// in-place keys, the sparse selection and the cached steps' scatter and two-source attention
// see row slices; the tokens must not change, and no step may need more than was planned.
TEST(CacheGolden, ChunkedStepsGiveTheSameTokens) {
  auto be = make_cpu_backend();
  Kinds chunked;
  for (const char* fixture : {"llada_tiny", "dream_tiny"}) {
    Model m((test::fixtures_dir() / fixture).string(), *be);
    const bool llada = std::string(fixture) == "llada_tiny";
    const json goldens = cache_goldens(fixture);
    for (const json& c : goldens["cases"]) {
      const CacheOptions cache = test::golden_cache(c);
      if (cache.mode == CacheMode::None) continue;
      auto on_step = [&](const StepEvent& ev, const std::vector<int32_t>&) {
        if (!ev.ran_model || std::none_of(ev.stats.chunks.begin(), ev.stats.chunks.end(), [](int n) { return n > 1; }))
          return;
        (ev.cache_step == CacheStep::Store ? chunked.store : ev.cache_step == CacheStep::Cached ? chunked.cached
                                                                                                 : chunked.full) += 1;
      };
      const auto prompt = c["prompt_tokens"].get<std::vector<int32_t>>();
      const int64_t masks = std::count(prompt.begin(), prompt.end(), static_cast<int32_t>(m.config().mask_token_id));
      GenerateResult r;
      if (llada) {
        GenerateOptions o = test::golden_options(c);
        o.cache = cache;
        o.threshold = test::golden_threshold(c);
        const int64_t L = static_cast<int64_t>(prompt.size()) + o.gen_length;
        tightest_budget(m, cache, {L, o.block_length, std::min(L, o.block_length + masks)}, o.cfg_scale > 0);
        r = llada_generate(m, prompt, o, on_step);
      } else {
        DreamOptions o = test::dream_golden_options(c);
        o.cache = cache;
        o.threshold = test::golden_threshold(c);
        const int64_t L = static_cast<int64_t>(prompt.size()) + o.gen_length;
        const int64_t block = o.block_length > 0 ? o.block_length : o.gen_length;
        tightest_budget(m, cache, {L, block, std::min(L, block + masks)}, false);
        r = dream_generate(m, prompt, o, on_step);
      }
      EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << fixture << " " << c["name"];
    }
  }
  EXPECT_GT(chunked.store, 0) << "no store step was chunked";
  EXPECT_GT(chunked.cached, 0) << "no cached step was chunked";
  EXPECT_GT(chunked.full, 0) << "no full step (sparse's first) was chunked";
}

}  // namespace
}  // namespace mosaic
