// The batch dimension on the GPU: in cuda-fp32, generations run in shared passes equal each
// generation alone, token for token, for every family and cache the server batches; in bf16 a
// packed step's logits stay within bf16 rounding of each sequence's own step.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/backend.h"
#include "batch_jobs.h"
#include "models/model.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

TEST(CudaBatch, Fp32GenerationsInSharedPassesEqualAlone) {
  auto gpu = make_cuda_backend(0, true);
  for (const test::Case c : {test::Case{"llada_tiny", CacheMode::None, false}, test::Case{"llada_tiny", CacheMode::Dual, false},
                             test::Case{"llada_tiny", CacheMode::Prefix, false}, test::Case{"llada_tiny", CacheMode::Dual, true},
                             test::Case{"dream_tiny", CacheMode::Dual, false}, test::Case{"llada_moe_tiny", CacheMode::Dual, false},
                             test::Case{"llada2_tiny", CacheMode::None, false}}) {
    Model m((test::fixtures_dir() / c.fixture).string(), *gpu);
    constexpr int n = 3;
    std::vector<std::vector<int32_t>> alone;
    for (int i = 0; i < n; ++i) {
      test::Job j = test::make_job(m, i, c.cache, c.guided);
      alone.push_back(run_generation(m, *j.sampler, j.seq).tokens);
    }
    std::vector<test::Job> jobs;
    for (int i = 0; i < n; ++i) jobs.push_back(test::make_job(m, i, c.cache, c.guided));
    test::run_in_rounds(m, jobs);
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(jobs[i].seq.tokens, alone[i]) << c.fixture << " " << cache_mode_name(c.cache)
                                              << (c.guided ? " guided" : "") << " sequence " << i;
  }
}

TEST(CudaBatch, Bf16PackedLogitsStayNearEachSequencesOwn) {
  auto gpu = make_cuda_backend(0, false);
  Model m((test::fixtures_dir() / "llada_tiny").string(), *gpu);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 4; ++i) {
    auto t = test::prompt_of(40 + 70 * i, i);
    t.resize(t.size() + 32, mask);
    seqs.push_back(t);
  }
  std::vector<StepRequest> reqs;
  for (const auto& t : seqs) {
    const int32_t L = static_cast<int32_t>(t.size());
    reqs.push_back(test::logits_request(t, {L - 32, L - 20, L - 1}));
  }
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < reqs.size(); ++i) batch.push_back({&reqs[i], static_cast<int64_t>(i)});
  const std::vector<StepOutputs> packed = m.step_batch(batch);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::vector<float> own = m.step(reqs[i]).logits;
    ASSERT_EQ(packed[i].logits.size(), own.size());
    double num = 0, den = 0;
    for (size_t k = 0; k < own.size(); ++k) {
      num = std::max(num, std::abs(static_cast<double>(own[k]) - packed[i].logits[k]));
      den = std::max(den, std::abs(static_cast<double>(own[k])));
    }
    EXPECT_LT(num / den, 2e-2) << "sequence " << i;
  }
}

}  // namespace
}  // namespace mosaic
