// The MoE families on the GPU against the CPU backend: LLaDA2.0 (block-causal, partial rope, q/k
// norms, sigmoid router) and LLaDA-MoE (softmax router), bf16 logits within bf16 tolerance, and in
// cuda-fp32 every golden token for token (LLaDA2.0 with and without the exact prefix cache).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include "backend/backend.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "reference_tensors.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

std::string llada2_tiny() { return (test::fixtures_dir() / "llada2_tiny").string(); }

TEST(CudaMoe, LogitsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend();
  for (bool fp32 : {false, true})
    for (const char* fixture : {"llada2_tiny", "llada_moe_tiny"}) {
    auto gpu = make_cuda_backend(0, fp32);
    const std::string dir = (test::fixtures_dir() / fixture).string();
    Model mc(dir, *cpu), mg(dir, *gpu);
    std::vector<int32_t> t(45);
    for (size_t i = 0; i < t.size(); ++i) t[i] = i >= 30 && i % 3 == 0 ? 399 : static_cast<int32_t>((i * 37 + 11) % 390);
    std::vector<int32_t> pos(t.size());
    std::iota(pos.begin(), pos.end(), 0);
    for (int64_t block : {int64_t{8}, int64_t{0}}) {
      StepRequest r = test::logits_request(t, pos);
      r.attention_block = block;
      const auto a = mc.step(r).logits, b = mg.step(r).logits;
      ASSERT_EQ(a.size(), b.size());
      std::printf("%s %s block %lld: rel error %.3g\n", fixture, fp32 ? "cuda-fp32" : "cuda",
                  static_cast<long long>(block), test::rel_error(b, a));
      // bf16: LLaDA2.0's group-limited sigmoid router on random tiny weights turns a rounding
      // difference into another expert for a row now and then (measured 0.013-0.094 across the
      // attention and expert kernels, against ~1 for a wrong kernel); the kernels themselves are
      // held to the CPU one by one (MoeKernels.*, SplitAttention.*).
      const double bf16_tol = std::string(fixture) == "llada2_tiny" ? 0.15 : 2e-2;
      EXPECT_LT(test::rel_error(b, a), fp32 ? 1e-5 : bf16_tol) << fixture << (fp32 ? " cuda-fp32" : " cuda") << " block " << block;
    }
  }
}

// The shipped trained models in bf16 against the CPU's fp32, on real text with a half-masked
// last block: random weights give near-uniform logits, trained ones real margins. Every row
// whose fp32 top-two gap is wide (> 1 logit) must keep its argmax in bf16. The dense
// mosaic-tiny runs as the control for the MoE one.
TEST(CudaMoe, TheShippedModelsKeepTheirDecisionsInBf16) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0, false);
  for (const char* name : {"mosaic-moe-tiny", "mosaic-tiny"}) {
    const auto dir = test::source_dir() / "models" / name;
    Model mc(dir.string(), *cpu), mg(dir.string(), *gpu);
    const auto g = nlohmann::json::parse(test::read_file(dir / "goldens.json"));
    const auto mask = static_cast<int32_t>(mc.config().mask_token_id);
    std::vector<int32_t> t = g["cases"][0]["prompt_tokens"].get<std::vector<int32_t>>();
    for (int32_t v : g["cases"][0]["output_tokens"]) t.push_back(v);
    t.resize(96);
    for (size_t i = 64; i < t.size(); i += 2) t[i] = mask;
    std::vector<int32_t> pos(t.size());
    std::iota(pos.begin(), pos.end(), 0);
    StepRequest r = test::logits_request(t, pos);
    r.attention_block = mc.config().family == "llada2" ? 32 : 0;
    const auto a = mc.step(r).logits, b = mg.step(r).logits;
    ASSERT_EQ(a.size(), b.size());
    const size_t V = a.size() / t.size();
    int wide = 0, kept = 0, same_argmax = 0;
    for (size_t row = 0; row < t.size(); ++row) {
      const float* x = a.data() + row * V;
      const float* y = b.data() + row * V;
      const size_t top = std::max_element(x, x + V) - x, top_b = std::max_element(y, y + V) - y;
      float second = -INFINITY;
      for (size_t v = 0; v < V; ++v)
        if (v != top) second = std::max(second, x[v]);
      same_argmax += top == top_b;
      if (x[top] - second > 1.0f) ++wide, kept += top == top_b;
    }
    std::printf("%s: bf16 vs fp32 logits rel error %.4f; argmax equal on %d/%zu rows; %d/%d rows with a gap > 1 "
                "kept\n", name, test::rel_error(b, a), same_argmax, t.size(), kept, wide);
    EXPECT_GT(wide, 10) << name;
    EXPECT_EQ(kept, wide) << name;
    EXPECT_LT(test::rel_error(b, a), 0.05) << name;
  }
}

TEST(CudaMoe, Llada2Fp32GoldensEqualWithAndWithoutThePrefixCache) {
  auto gpu = make_cuda_backend(0, true);
  Model m(llada2_tiny(), *gpu);
  const auto g = nlohmann::json::parse(test::read_file(test::fixtures_dir() / "llada2_tiny" / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 15u);
  for (CacheMode cache : {CacheMode::None, CacheMode::Prefix})
    for (const auto& c : g["cases"]) {
      Llada2Options o = test::llada2_golden_options(c);
      o.cache = cache;
      auto r = llada2_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
      EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
          << c["name"] << " cache " << cache_mode_name(cache) << " (min margin " << c["min_margin"] << ")";
    }
}

TEST(CudaMoe, LladaMoeFp32GoldensEqual) {
  auto gpu = make_cuda_backend(0, true);
  const auto dir = test::fixtures_dir() / "llada_moe_tiny";
  Model m(dir.string(), *gpu);
  const auto g = nlohmann::json::parse(test::read_file(dir / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 10u);
  for (const auto& c : g["cases"]) {
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
        << c["name"] << " (min margin " << c["min_margin"] << ")";
  }
}

}  // namespace
}  // namespace mosaic
