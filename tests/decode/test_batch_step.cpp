// The batch dimension: several sequences' steps in one pass (Model::step_batch, run_batch_step)
// give every sequence what its steps alone give. Logits of a packed step equal each sequence's
// own step; whole generations run in rounds (every member starts a block together, as the
// server's scheduler runs them) give the tokens of each generation alone, for every family,
// with and without caches, guidance and sampling noise; bad batches get clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/engine.h"
#include "models/model.h"
#include "batch_jobs.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

std::string fixture(const char* name) { return (test::fixtures_dir() / name).string(); }

using test::Case;
using test::Job;
using test::make_job;
using test::prompt_of;
using test::run_in_rounds;

class BatchedGeneration : public ::testing::TestWithParam<Case> {};

TEST_P(BatchedGeneration, EachSequenceGetsItsTokensAlone) {
  const Case c = GetParam();
  auto be = make_cpu_backend();
  Model m(fixture(c.fixture), *be);
  constexpr int n = 3;
  std::vector<std::vector<int32_t>> alone;
  for (int i = 0; i < n; ++i) {
    Job j = make_job(m, i, c.cache, c.guided);
    alone.push_back(run_generation(m, *j.sampler, j.seq).tokens);
  }
  std::vector<Job> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back(make_job(m, i, c.cache, c.guided));
  run_in_rounds(m, jobs);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(jobs[i].seq.tokens, alone[i]) << "sequence " << i;
    // Something was generated: the tokens are not the masks they started as.
    int64_t masks = 0;
    for (int32_t t : jobs[i].seq.tokens) masks += t == static_cast<int32_t>(m.config().mask_token_id);
    EXPECT_LT(masks, jobs[i].seq.gen_length()) << "sequence " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, BatchedGeneration,
    ::testing::Values(Case{"llada_tiny", CacheMode::None, false}, Case{"llada_tiny", CacheMode::Dual, false},
                      Case{"llada_tiny", CacheMode::Prefix, false}, Case{"llada_tiny", CacheMode::None, true},
                      Case{"llada_tiny", CacheMode::Dual, true}, Case{"dream_tiny", CacheMode::None, false},
                      Case{"dream_tiny", CacheMode::Dual, false}, Case{"llada_moe_tiny", CacheMode::Dual, false},
                      Case{"llada2_tiny", CacheMode::None, false}),
    [](const auto& info) {
      return std::string(info.param.fixture) + "_" + cache_mode_name(info.param.cache) +
             (info.param.guided ? "_guided" : "");
    });

TEST(BatchStep, PackedLogitsEqualEachSequencesOwn) {
  auto be = make_cpu_backend();
  Model m(fixture("llada_tiny"), *be);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 3; ++i) {
    auto t = prompt_of(6 + 9 * i, i);
    t.resize(t.size() + 10, mask);
    seqs.push_back(t);
  }
  std::vector<StepRequest> reqs;
  for (const auto& t : seqs) {
    const int32_t L = static_cast<int32_t>(t.size());
    reqs.push_back(test::logits_request(t, {L - 10, L - 7, L - 1}));
  }
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < reqs.size(); ++i) batch.push_back({&reqs[i], static_cast<int64_t>(i)});
  const std::vector<StepOutputs> packed = m.step_batch(batch);
  ASSERT_EQ(packed.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::vector<float> own = m.step(reqs[i]).logits;
    ASSERT_EQ(packed[i].logits.size(), own.size());
    double diff = 0;
    for (size_t k = 0; k < own.size(); ++k) diff = std::max(diff, std::abs(static_cast<double>(own[k]) - packed[i].logits[k]));
    EXPECT_LT(diff, 1e-4) << "sequence " << i;
  }
  // Not every sequence's logits are alike: packing did not hand one sequence's rows to all.
  double apart = 0;
  for (size_t k = 0; k < packed[0].logits.size(); ++k)
    apart = std::max(apart, std::abs(static_cast<double>(packed[0].logits[k]) - packed[1].logits[k]));
  EXPECT_GT(apart, 1e-3);
}

TEST(BatchStep, RefusesMixedKindsAndCachedStepsWithoutAStore) {
  auto be = make_cpu_backend();
  Model m(fixture("llada_tiny"), *be);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  auto t = prompt_of(8, 0);
  t.resize(16, mask);
  StepRequest a = test::sample_request(t, {8, 9});
  StepRequest b = test::logits_request(t, {8, 9});
  try {
    m.step_batch({{&a, 0}, {&b, 1}});
    ADD_FAILURE() << "mixed kinds ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different kinds of step"), std::string::npos) << e.what();
  }
  StepRequest c = a;
  c.cache.options.mode = CacheMode::Dual;
  c.cache.step = CacheStep::Cached;
  c.cache.block_begin = c.cache.run_begin = 8;
  c.cache.block_end = c.cache.run_end = 16;
  try {
    m.step_batch({{&c, 0}});
    ADD_FAILURE() << "a cached step without its store ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("found no cache"), std::string::npos) << e.what();
  }
  // After a batch's store, a sequence that was not in it has no cache.
  StepRequest store = c;
  store.cache.step = CacheStep::Store;
  m.step_batch({{&store, 0}});
  m.step_batch({{&c, 0}});  // its own id: fine
  try {
    m.step_batch({{&c, 7}});
    ADD_FAILURE() << "a cached step of a sequence not stored ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sequence 7"), std::string::npos) << e.what();
  }
  c.cache.options.mode = CacheMode::Sparse;
  try {
    m.step_batch({{&c, 0}});
    ADD_FAILURE() << "a sparse cache's step ran batched";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mosaic

namespace mosaic {
namespace {

TEST(BatchStep, GreedyRowsSampleAlikeWhateverTheirSeed) {
  SampleParams a, b;
  b.seed = 9, b.step = 4;
  EXPECT_TRUE(a.samples_like(b)) << "greedy: the seed draws nothing";
  a.temperature = b.temperature = 0.7;
  EXPECT_FALSE(a.samples_like(b)) << "sampled: the seed draws the noise";
  b.seed = a.seed, b.step = a.step;
  EXPECT_TRUE(a.samples_like(b));
  a.temperature = b.temperature = 0.0;
  a.confidence = b.confidence = Confidence::Random;
  b.seed = 3;
  EXPECT_FALSE(a.samples_like(b)) << "random remasking draws from the seed";
  SampleParams c;
  c.top_k = 5;
  EXPECT_FALSE(SampleParams{}.samples_like(c));
}

}  // namespace
}  // namespace mosaic
