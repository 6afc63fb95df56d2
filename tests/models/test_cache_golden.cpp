// Cached decoding on the CPU against the PyTorch reference (tools/reference/cached_generate.py):
// Fast-dLLM's prefix and dual caches, Sparse-dLLM's sparse cache and threshold decoding, for
// LLaDA and Dream, token for token (cache_goldens.json, float64 reference, margins > 1e-5).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "backend/backend.h"
#include "decode/dream_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
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

}  // namespace
}  // namespace mosaic
