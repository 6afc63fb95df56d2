// The CUDA backend end to end against the CPU backend on the fixture model: logits,
// sampled tokens, chunked plans, the VMM arena.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "decode/llada_sampler.h"
#include "memory/cuda/vmm_region.h"
#include "backend/cuda/cuda_check.h"
#include "models/model.h"
#include "golden_case.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

std::string tiny() { return (test::fixtures_dir() / "llada_tiny").string(); }

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

std::vector<int32_t> iota_pos(size_t n) {
  std::vector<int32_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(i);
  return p;
}

std::vector<int32_t> sample_tokens(int64_t L) {
  std::vector<int32_t> t(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) t[i] = static_cast<int32_t>((i * 37 + 11) % 394);
  for (int64_t i = L / 2; i < L; i += 3) t[i] = 399;  // some masks
  return t;
}

TEST(CudaModel, LogitsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0);
  Model mc(tiny(), *cpu), mg(tiny(), *gpu);
  for (int64_t L : {20, 77, 300}) {
    auto t = sample_tokens(L);
    auto pos = iota_pos(t.size());
    auto a = mc.step(test::logits_request(t, pos)).logits;
    auto b = mg.step(test::logits_request(t, pos)).logits;
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(rel_err(b, a), 1e-2) << "L=" << L;
  }
}

// Cached steps in bf16: the caches written by the store step (in place, or selected by the
// sparse eviction) and read by the cached step give the CPU's logits. (A sparse cache that
// keeps half may keep other rows at near-ties in bf16; cuda-fp32 runs its goldens exactly.)
TEST(CudaModel, CachedStepLogitsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0);
  for (const char* fixture : {"llada_tiny", "dream_tiny"}) {
    const auto dir = (test::fixtures_dir() / fixture).string();
    Model mc(dir, *cpu), mg(dir, *gpu);
    auto t = sample_tokens(300);
    for (int64_t i = 200; i < 300; ++i) t[i] = static_cast<int32_t>(mc.config().mask_token_id);
    for (CacheOptions c : {CacheOptions{CacheMode::Prefix}, CacheOptions{CacheMode::Dual},
                           CacheOptions{CacheMode::Sparse, 1.0, 3}}) {
      auto a = test::cached_block_logits(mc, t, c, 232, 264, 233);
      auto b = test::cached_block_logits(mg, t, c, 232, 264, 233);
      ASSERT_EQ(a.size(), b.size());
      EXPECT_LT(rel_err(b, a), 1e-2) << fixture << " " << cache_mode_name(c.mode) << " keep " << c.sparse_keep;
    }
  }
}

TEST(CudaModel, DreamLogitsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0);
  const std::string dir = (test::fixtures_dir() / "dream_tiny").string();
  Model mc(dir, *cpu), mg(dir, *gpu);
  for (int64_t L : {20, 300}) {
    std::vector<int32_t> t(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) t[i] = i >= L / 2 && i % 3 == 0 ? 500 : static_cast<int32_t>((i * 37 + 11) % 490);
    auto pos = iota_pos(t.size());
    auto a = mc.step(test::logits_request(t, pos)).logits;
    auto b = mg.step(test::logits_request(t, pos)).logits;
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(rel_err(b, a), 1e-2) << "L=" << L;
  }
}

TEST(CudaModel, DreamSamplingOnTheGpuEqualsTheCpuOnTheSameLogits) {
  // Dream's rule (filters, margin, entropy) on the device path: the same tokens and
  // confidences as the CPU kernel for the logits the device produced.
  auto gpu = make_cuda_backend(0);
  const std::string dir = (test::fixtures_dir() / "dream_tiny").string();
  Model mg(dir, *gpu);
  std::vector<int32_t> t(64);
  for (size_t i = 0; i < t.size(); ++i) t[i] = i >= 16 ? 500 : static_cast<int32_t>((i * 37 + 11) % 490);
  std::vector<int32_t> pos;
  for (int32_t i = 16; i < 64; ++i) pos.push_back(i);
  const std::vector<float> logits = mg.step(test::logits_request(t, pos)).logits;
  const int64_t V = mg.config().embedding_size;
  for (Confidence c : {Confidence::Probability, Confidence::Margin, Confidence::NegEntropy})
    for (int filter : {0, 1, 2})  // none (the device kernel), top-p, top-k (the host)
      for (double temperature : {0.0, 0.5}) {
      SampleParams sp;
      sp.rule = TokenRule::Dream;
      sp.confidence = c;
      sp.top_p = filter == 1 ? 0.9 : 1.0;
      sp.top_k = filter == 2 ? 20 : 0;
      sp.temperature = temperature;
      sp.seed = 3;
      StepOutputs out = mg.step(test::sample_request(t, pos, sp));
      std::vector<int32_t> tok(pos.size());
      std::vector<float> conf(pos.size());
      cpu::sample_rows(logits.data(), static_cast<int64_t>(pos.size()), V, pos.data(), sp, tok.data(), conf.data());
      EXPECT_EQ(out.token, tok);
      for (size_t i = 0; i < conf.size(); ++i) EXPECT_NEAR(out.conf[i], conf[i], 1e-6);
    }
}

TEST(CudaModel, ChunkedEqualsUnchunkedOnTheGpu) {
  auto gpu = make_cuda_backend(0);
  const int64_t L = 300;
  auto t = sample_tokens(L);
  auto pos = iota_pos(t.size());
  Model plain(tiny(), *gpu);
  SampleParams sp;
  sp.seed = 1;
  Dims d{L, L};
  const size_t full = plain.plan(d).arena_bytes();
  StepOutputs a = plain.step(test::sample_request(t, pos, sp));
  Model chunked(tiny(), *gpu);
  chunked.set_activation_budget(full / 2);
  const MemoryPlan& p = chunked.plan(d);
  ASSERT_GT(*std::max_element(p.chunks.begin(), p.chunks.end()), 1);
  StepOutputs b = chunked.step(test::sample_request(t, pos, sp));
  // Chunks change GEMM shapes (and so bf16 rounding paths) but not the math: tokens agree
  // wherever the CPU's decision margin is not inside bf16 noise; require near-total agreement.
  int same = 0;
  for (size_t i = 0; i < a.token.size(); ++i) same += a.token[i] == b.token[i];
  EXPECT_GE(same, static_cast<int>(a.token.size()) - 3);
  for (size_t i = 0; i < a.conf.size(); ++i) EXPECT_NEAR(a.conf[i], b.conf[i], 2e-2);
}

// A report, not a check: the fixture's random weights decide with margins of 2e-5..5e-3,
// inside bf16 rounding, so a bf16 run cannot be required to follow the float64 trajectory.
// The check on real decisions is ShippedModelGoldens. Run with --gtest_also_run_disabled_tests.
TEST(CudaModel, DISABLED_FixtureGoldensReport) {
  auto gpu = make_cuda_backend(0);
  Model m(tiny(), *gpu);
  auto g = nlohmann::json::parse(test::read_file(test::fixtures_dir() / "llada_tiny" / "goldens.json"));
  int exact = 0, total = 0;
  for (const auto& c : g["cases"]) {
    GenerateOptions o = test::golden_options(c);
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
    bool eq = r.tokens == c["output_tokens"].get<std::vector<int32_t>>();
    ++total;
    exact += eq;
    std::printf("golden %-28s margin %.2e  %s\n", c["name"].get<std::string>().c_str(), c["min_margin"].get<double>(),
                eq ? "equal" : "DIFFERENT");
  }
  std::printf("CUDA greedy goldens equal: %d of %d\n", exact, total);
}

TEST(CudaModel, ShippedModelGoldens) {
  // Every case whose smallest decision margin (the float64 reference's gap between the
  // committed and the next candidate, over the whole run) is above bf16 noise (~4e-3
  // relative on logits) must give the reference's tokens exactly. Below it, one flipped
  // decision re-routes the rest of the run: those cases are reported, not required.
  auto gpu = make_cuda_backend(0);
  auto dir = test::source_dir() / "models" / "mosaic-tiny";
  Model m(dir.string(), *gpu);
  auto g = nlohmann::json::parse(test::read_file(dir / "goldens.json"));
  constexpr double kBf16Margin = 5e-3;
  int exact = 0, total = 0, required = 0;
  for (const auto& c : g["cases"]) {
    GenerateOptions o = test::golden_options(c);
    auto want = c["output_tokens"].get<std::vector<int32_t>>();
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
    int same = 0;
    for (size_t i = 0; i < want.size(); ++i) same += r.tokens[i] == want[i];
    ++total;
    exact += r.tokens == want;
    std::printf("shipped golden %-20s margin %.2e  %d/%zu tokens equal\n", c["name"].get<std::string>().c_str(),
                c["min_margin"].get<double>(), same, want.size());
    if (c["min_margin"].get<double>() >= kBf16Margin) {
      ++required;
      EXPECT_EQ(r.tokens, want) << c["name"];
    }
  }
  std::printf("CUDA shipped-model goldens equal: %d of %d (%d required)\n", exact, total, required);
  EXPECT_GT(required, 0) << "no golden case decides above bf16 noise: regenerate models/mosaic-tiny/goldens.json";
}

TEST(CudaModel, VmmRegionGrowsShrinksAndKeepsItsBase) {
  int dev = 0;
  CUDA_CHECK(cudaSetDevice(dev));
  CUDA_CHECK(cudaFree(nullptr));
  VmmRegion r(dev, size_t{8} << 30, "test region");
  std::byte* base = r.base();
  r.resize(3 << 20);
  EXPECT_GE(r.mapped(), size_t{3} << 20);
  EXPECT_EQ(r.mapped() % r.granularity(), 0u);
  CUDA_CHECK(cudaMemset(r.base(), 1, 3 << 20));
  r.resize(size_t{1} << 30);
  CUDA_CHECK(cudaMemset(r.base(), 2, size_t{1} << 30));  // the whole range is writable
  EXPECT_EQ(r.base(), base);
  r.resize(4 << 20);
  EXPECT_LT(r.mapped(), size_t{1} << 30);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_THROW(r.resize(size_t{16} << 30), Error);  // past the reservation: a clear error
}

}  // namespace
}  // namespace mosaic
