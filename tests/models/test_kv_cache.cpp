// The key/value caches as persistent tensors: a cached step right after the step that stored
// the cache sees the keys and values a full step computes, so its logits are the full step's
// (prefix, dual, and sparse keeping everything); a sparse cache that keeps half changes them;
// the plan holds the caches at stable offsets; bad requests get clear errors.
#include <gtest/gtest.h>

#include <cmath>

#include <fmt/format.h>

#include "backend/backend.h"
#include "core/error.h"
#include "models/generation_plan.h"
#include "models/model.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

// The statement throws a mosaic::Error whose message holds `text`.
#define EXPECT_THROW_MSG(statement, text)                                                 \
  do {                                                                                    \
    std::string what_;                                                                    \
    try {                                                                                 \
      statement;                                                                          \
    } catch (const Error& e) {                                                            \
      what_ = e.what();                                                                   \
    }                                                                                     \
    EXPECT_NE(what_.find(text), std::string::npos) << "error: '" << what_ << "'";         \
  } while (0)

std::string fixture(const char* name) { return (test::fixtures_dir() / name).string(); }

std::vector<int32_t> sequence(int64_t prompt, int64_t gen, int32_t mask) {
  std::vector<int32_t> t(static_cast<size_t>(prompt + gen), mask);
  for (int64_t i = 0; i < prompt; ++i) t[i] = static_cast<int32_t>((i * 37 + 11) % 300);
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class CachedStep : public ::testing::TestWithParam<const char*> {};

TEST_P(CachedStep, RightAfterTheStoreEqualsAFullStep) {
  auto be = make_cpu_backend();
  Model m(fixture(GetParam()), *be);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  auto tokens = sequence(20, 24, mask);
  tokens[30] = 5;  // a committed token inside the block
  const int64_t begin = 28, end = 36;
  // Dream's prediction for the block's first position comes from the row before the block,
  // which a cached step does not run (Fast-dLLM reads the position's own row instead).
  const int64_t first = m.family().head_row(begin) < begin ? begin + 1 : begin;
  std::vector<int32_t> block;
  for (int64_t p = first; p < end; ++p) block.push_back(static_cast<int32_t>(p));
  const std::vector<float> full = m.step(test::logits_request(tokens, block)).logits;
  for (CacheOptions c : {CacheOptions{CacheMode::Prefix}, CacheOptions{CacheMode::Dual},
                         CacheOptions{CacheMode::Sparse, 1.0, 3}}) {
    const auto cached = test::cached_block_logits(m, tokens, c, begin, end, first);
    ASSERT_EQ(cached.size(), full.size());
    EXPECT_LT(max_abs_diff(cached, full), 1e-4) << cache_mode_name(c.mode);
  }
  // Keeping half the positions is an approximation: the logits move.
  const auto half = test::cached_block_logits(m, tokens, {CacheMode::Sparse, 0.5, 3}, begin, end, first);
  EXPECT_GT(max_abs_diff(half, full), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Families, CachedStep, ::testing::Values("llada_tiny", "dream_tiny"));

TEST(KvCache, ACachedStepNeedsItsBlocksStoredCache) {
  auto be = make_cpu_backend();
  Model m(fixture("llada_tiny"), *be);
  auto tokens = sequence(10, 16, static_cast<int32_t>(m.config().mask_token_id));
  StepRequest r = test::logits_request(tokens, {12, 13});
  r.cache.options.mode = CacheMode::Dual;
  r.cache.block_begin = 10;
  r.cache.block_end = 18;
  r.cache.step = CacheStep::Cached;
  r.cache.run_begin = 10;
  r.cache.run_end = 18;
  EXPECT_THROW_MSG(m.step(r), "found no cache stored");
  StepRequest store = r;
  store.cache.step = CacheStep::Store;
  m.step(store);
  EXPECT_NO_THROW(m.step(r));
  // Another block's cached step, or a step without the cache in between, finds none.
  StepRequest other = r;
  other.cache.block_begin = other.cache.run_begin = 18;
  other.cache.block_end = other.cache.run_end = 26;
  other.head_pos = {20};
  EXPECT_THROW_MSG(m.step(other), "found no cache stored");
  m.step(test::logits_request(tokens, {12}));
  EXPECT_THROW_MSG(m.step(r), "found no cache stored");
  // A head position outside the rows run.
  m.step(store);
  r.head_pos = {5};
  EXPECT_THROW_MSG(m.step(r), "outside the rows run");
}

TEST(KvCache, CachesAreThePlansPersistentPrefix) {
  auto be = make_cpu_backend();
  Model m(fixture("llada_tiny"), *be);
  const io::ModelConfig& c = m.config();
  GraphOptions o;
  GenerationPlanner planner{c, o, {CacheMode::Dual}};
  const GenerationPlan dual = planner.plan({1000, 32, 32});
  ASSERT_TRUE(dual.fits);
  // Keys and values of every layer, every position, in f32 on the CPU.
  const size_t expect = static_cast<size_t>(c.n_layers * 2 * 1000 * c.kv_dim()) * 4;
  EXPECT_EQ(dual.cache_bytes, expect);
  for (const StepKindPlan& k : dual.steps) {
    ASSERT_TRUE(k.plan);
    EXPECT_EQ(k.plan->persistent_bytes(), expect) << "every kind of step holds the same caches";
    EXPECT_GE(k.plan->arena_bytes(), expect);
  }
  planner.cache = {CacheMode::Sparse, 0.5, 3};
  const GenerationPlan sparse = planner.plan({1000, 32, 32});
  // int((1000 - 32) * 0.5) kept rows: the block's fresh keys are not part of the cache.
  EXPECT_EQ(sparse.cache_bytes, static_cast<size_t>(c.n_layers * 2 * 484 * c.kv_dim()) * 4);
  EXPECT_LE(sparse.cache_bytes, dual.cache_bytes / 2) << "Sparse-dLLM's cache: at most keep x the dual cache";
  planner.cache = {CacheMode::None};
  EXPECT_EQ(planner.plan({1000, 32, 32}).cache_bytes, 0u);
}

TEST(KvCache, TheLongestGenerationThatFitsShrinksWithTheCache) {
  auto be = make_cpu_backend();
  Model m(fixture("llada_tiny"), *be);
  GraphOptions o;
  const size_t budget = 4u << 20;
  GenerationPlanner none{m.config(), o, {CacheMode::None}, budget};
  GenerationPlanner dual{m.config(), o, {CacheMode::Dual}, budget};
  GenerationPlanner sparse{m.config(), o, {CacheMode::Sparse, 0.5, 3}, budget};
  const GenerationShape s{512, 32, 32};
  const int64_t n = none.max_tokens(s), d = dual.max_tokens(s), sp = sparse.max_tokens(s);
  EXPECT_GT(n, d) << "a dual cache costs memory";
  EXPECT_GT(sp, d) << "a sparse cache keeps half";
  GenerationShape at = s;
  at.tokens = d;
  EXPECT_TRUE(dual.plan(at).fits);
  at.tokens = d + 1;
  EXPECT_FALSE(dual.plan(at).fits);
  const std::string msg = describe_misfit(dual, at, dual.plan(at));
  EXPECT_NE(msg.find(fmt::format("the largest L that fits is {} tokens", d)), std::string::npos) << msg;
}

TEST(KvCache, OptionsOutOfRangeNameTheFlag) {
  EXPECT_THROW_MSG(parse_cache_mode("full"), "--cache 'full' is not known");
  EXPECT_THROW_MSG(validate_cache_options({CacheMode::Sparse, 0.0, 3}), "--sparse-keep must be in (0, 1]");
  EXPECT_THROW_MSG(validate_cache_options({CacheMode::Sparse, 1.5, 3}), "--sparse-keep must be in (0, 1]");
  EXPECT_THROW_MSG(validate_cache_options({CacheMode::Sparse, 0.5, 4}), "--sparse-kernel must be an odd width");
  EXPECT_THROW_MSG(validate_cache_options({CacheMode::Sparse, 0.5, 0}), "--sparse-kernel must be an odd width");
  EXPECT_EQ(sparse_kept_rows(7, 0.5), 3);
  EXPECT_EQ(cache_rows({CacheMode::Sparse, 0.5, 3}, 100, 8), 46);
  EXPECT_EQ(cache_rows({CacheMode::Prefix}, 100, 8), 100);
}

}  // namespace
}  // namespace mosaic
