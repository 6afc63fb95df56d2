// A step sharded across ranks on the GPU (Model::set_shards, issue 17), where one GPU is lent:
// two cuda-fp32 ranks sharing the device (a LocalGroup copying with cudaMemcpy) give every
// golden generation the single-GPU run's tokens, with either exchange; one NCCL rank runs the
// sharded graph with NCCL doing the exchange; bf16 ranks hold the single-GPU logits to bf16's
// tolerance.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <numeric>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"
#include "decode/dream_sampler.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "parallel/cuda/device_copy.h"
#include "reference_tensors.h"
#include "sharded_models.h"
#include "step_request.h"
#include "test_util.h"
#if defined(MOSAIC_NCCL)
#include "parallel/cuda/nccl_communicator.h"
#endif

namespace mosaic {
namespace {

using nlohmann::json;

std::string fixture(const std::string& name) { return (test::fixtures_dir() / name).string(); }

std::unique_ptr<test::ShardedModel> on_one_gpu(const std::string& name, int ranks, bool fp32,
                                                parallel::Exchange exchange = parallel::Exchange::Auto) {
  auto m = std::make_unique<test::ShardedModel>(fixture(name), ranks, [&](int) { return make_cuda_backend(0, fp32); },
                                                parallel::device_copy, exchange);
  if (exchange != parallel::Exchange::Auto) EXPECT_EQ(m->model().exchange(), exchange);
  return m;
}
constexpr parallel::Exchange kExchanges[] = {parallel::Exchange::AllGather, parallel::Exchange::AllToAll};

// Every golden case of a family: the sharded run's tokens, the single-GPU run's, the goldens.
template <class Generate>
void expect_same_generations(const std::string& name, Model& sharded, Generate generate) {
  auto be = make_cuda_backend(0, true);
  Model one(fixture(name), *be);
  const json g = json::parse(test::read_file(test::fixtures_dir() / name / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 8u);
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::vector<int32_t> want = generate(one, c);
    EXPECT_EQ(generate(sharded, c), want);
    EXPECT_EQ(want, c["output_tokens"].get<std::vector<int32_t>>());
  }
}

std::vector<int32_t> prompt_of(const json& c) { return c["prompt_tokens"].get<std::vector<int32_t>>(); }

TEST(ShardedStepGpu, TwoFp32RanksGiveTheSingleGpuTokens) {
  for (parallel::Exchange e : kExchanges) {
    SCOPED_TRACE(parallel::exchange_name(e));
    auto llada = on_one_gpu("llada_tiny", 2, true, e);
    expect_same_generations("llada_tiny", llada->model(), [](Model& m, const json& c) {
      return llada_generate(m, prompt_of(c), test::golden_options(c)).tokens;
    });
    auto dream = on_one_gpu("dream_tiny", 2, true, e);
    expect_same_generations("dream_tiny", dream->model(), [](Model& m, const json& c) {
      return dream_generate(m, prompt_of(c), test::dream_golden_options(c)).tokens;
    });
    auto llada2 = on_one_gpu("llada2_tiny", 2, true, e);
    expect_same_generations("llada2_tiny", llada2->model(), [](Model& m, const json& c) {
      return llada2_generate(m, prompt_of(c), test::llada2_golden_options(c)).tokens;
    });
  }
}

TEST(ShardedStepGpu, Bf16RanksHoldTheSingleGpuLogits) {
  for (const char* name : {"llada_tiny", "llada_moe_tiny"}) {
    SCOPED_TRACE(name);
    auto be = make_cuda_backend(0, false);
    Model one(fixture(name), *be);
    std::vector<int32_t> tokens(45), pos(45);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % one.config().vocab_size);
    std::iota(pos.begin(), pos.end(), 0);
    const StepRequest r = test::logits_request(tokens, pos);
    const std::vector<float> want = one.step(r).logits;
    // 2 ranks both ways, 3 (all-gather: 4 heads), 4 (all-to-all; llada_tiny's 2 key/value heads each on 2 ranks)
    const std::vector<std::pair<int, parallel::Exchange>> runs = {{2, parallel::Exchange::AllGather},
                                                                  {2, parallel::Exchange::AllToAll},
                                                                  {3, parallel::Exchange::AllGather},
                                                                  {4, parallel::Exchange::AllToAll}};
    for (const auto& [ranks, e] : runs) {
      auto sharded = on_one_gpu(name, ranks, false, e);
      EXPECT_LT(test::rel_error(sharded->model().step(r).logits, want), 2e-2)
          << ranks << " ranks, " << parallel::exchange_name(e);
    }
  }
}

#if defined(MOSAIC_NCCL)
TEST(ShardedStepGpu, OneNcclRankGivesTheSingleGpuTokens) {
  std::string why;
  if (!parallel::NcclCommunicator::available(&why)) GTEST_SKIP() << why;
  for (parallel::Exchange e : kExchanges) {
    SCOPED_TRACE(parallel::exchange_name(e));
    auto comms = parallel::NcclCommunicator::for_devices({0});
    auto be = make_cuda_backend(0, true);
    Model m(fixture("llada_tiny"), *be);
    m.set_shards({}, {comms[0].get()}, e);
    expect_same_generations("llada_tiny", m, [](Model& mm, const json& c) {
      return llada_generate(mm, prompt_of(c), test::golden_options(c)).tokens;
    });
  }
}
#endif

}  // namespace
}  // namespace mosaic
