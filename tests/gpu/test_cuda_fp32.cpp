// The fp32 verification mode (`cuda-fp32`): the GPU held to the CPU backend and to the
// golden fixtures exactly, where bf16 can only be held to a tolerance.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "decode/dream_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

double max_rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num = std::max(num, std::abs(static_cast<double>(got[i]) - want[i]));
    den = std::max(den, std::abs(static_cast<double>(want[i])));
  }
  return num / den;
}

TEST(CudaFp32, AttentionMatchesTheCpuKernel) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.f, 1.f);
  struct Shape {
    int64_t rows, kv_rows;
    int heads, kv_heads, hd;
  };
  for (Shape s : {Shape{7, 7, 4, 2, 16}, Shape{33, 1000, 28, 4, 128}, Shape{64, 300, 8, 8, 64}}) {
    std::vector<float> q(static_cast<size_t>(s.rows * s.heads * s.hd)), k(static_cast<size_t>(s.kv_rows * s.kv_heads * s.hd)),
        v(k.size()), want(q.size()), got(q.size());
    for (auto* t : {&q, &k, &v})
      for (auto& x : *t) x = dist(rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
    std::vector<float> ws(static_cast<size_t>(cpu_traits().attn_workspace_rows * s.kv_rows));
    cpu::attention(q.data(), s.rows, k.data(), v.data(), s.kv_rows, s.heads, s.kv_heads, s.hd, scale, want.data(),
                   ws.data());
    float *dq, *dk, *dv, *dout;
    for (auto [d, h] : {std::pair{&dq, &q}, std::pair{&dk, &k}, std::pair{&dv, &v}}) {
      CUDA_CHECK(cudaMalloc(d, h->size() * 4));
      CUDA_CHECK(cudaMemcpy(*d, h->data(), h->size() * 4, cudaMemcpyHostToDevice));
    }
    CUDA_CHECK(cudaMalloc(&dout, got.size() * 4));
    // All keys in one place, then the last 5 as a second source (a sparse cache's block).
    const int64_t kv_w = static_cast<int64_t>(s.kv_heads) * s.hd, n2 = std::min<int64_t>(5, s.kv_rows);
    for (int64_t second : {int64_t{0}, n2}) {
      CUDA_CHECK(cudaMemset(dout, 0xff, got.size() * 4));  // NaN poison
      const int64_t n1 = s.kv_rows - second;
      cuda::attention_f32(dq, s.rows, dk, dv, n1, dk + n1 * kv_w, dv + n1 * kv_w, second, s.heads, s.kv_heads, s.hd,
                          scale, dout, nullptr);
      CUDA_CHECK(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost));
      EXPECT_LT(max_rel_err(got, want), 1e-5)
          << s.rows << "x" << s.kv_rows << " heads " << s.heads << "/" << s.kv_heads << ", " << second << " apart";
    }
    for (float* p : {dq, dk, dv, dout}) CUDA_CHECK(cudaFree(p));
  }
}

TEST(CudaFp32, LogitsMatchTheCpuBackendToFp32Rounding) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0, true);
  const auto dir = (test::fixtures_dir() / "llada_tiny").string();
  Model mc(dir, *cpu), mg(dir, *gpu);
  for (int64_t L : {20, 300}) {
    std::vector<int32_t> t(static_cast<size_t>(L)), pos(t.size());
    for (int64_t i = 0; i < L; ++i) {
      t[i] = i >= L / 2 && i % 3 == 0 ? 399 : static_cast<int32_t>((i * 37 + 11) % 394);
      pos[i] = static_cast<int32_t>(i);
    }
    auto a = mc.step(test::logits_request(t, pos)).logits;
    auto b = mg.step(test::logits_request(t, pos)).logits;
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(max_rel_err(b, a), 1e-5) << "L=" << L;
  }
}

// Every golden case, token for token: the fixture model (whose random weights decide with
// margins down to 2e-5) and the shipped model.
void expect_goldens_equal(const std::filesystem::path& model_dir, const std::filesystem::path& goldens) {
  auto gpu = make_cuda_backend(0, true);
  Model m(model_dir.string(), *gpu);
  auto g = nlohmann::json::parse(test::read_file(goldens));
  int cases = 0;
  for (const auto& c : g["cases"]) {
    GenerateOptions o = test::golden_options(c);
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
        << c["name"] << " (min margin " << c["min_margin"] << ")";
    ++cases;
  }
  EXPECT_GT(cases, 0);
}

TEST(CudaFp32, FixtureGoldensEqual) {
  expect_goldens_equal(test::fixtures_dir() / "llada_tiny", test::fixtures_dir() / "llada_tiny" / "goldens.json");
}

TEST(CudaFp32, ShippedModelGoldensEqual) {
  const auto dir = test::source_dir() / "models" / "mosaic-tiny";
  expect_goldens_equal(dir, dir / "goldens.json");
}

TEST(CudaFp32, DreamLogitsMatchTheCpuBackend) {
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0, true);
  const auto dir = (test::fixtures_dir() / "dream_tiny").string();
  Model mc(dir, *cpu), mg(dir, *gpu);
  std::vector<int32_t> t(40), pos(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    t[i] = i >= 20 && i % 3 == 0 ? 500 : static_cast<int32_t>((i * 37 + 11) % 490);
    pos[i] = static_cast<int32_t>(i);
  }
  auto a = mc.step(test::logits_request(t, pos)).logits;
  auto b = mg.step(test::logits_request(t, pos)).logits;
  ASSERT_EQ(a.size(), b.size());
  EXPECT_LT(max_rel_err(b, a), 1e-5);
}

TEST(CudaFp32, DreamGoldensEqual) {
  // Every algorithm, with and without top-p / top-k, greedy and seeded: the reference's tokens.
  auto gpu = make_cuda_backend(0, true);
  const auto dir = test::fixtures_dir() / "dream_tiny";
  Model m(dir.string(), *gpu);
  auto g = nlohmann::json::parse(test::read_file(dir / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 15u);
  for (const auto& c : g["cases"]) {
    auto r = dream_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::dream_golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
        << c["name"] << " (min margin " << c["min_margin"] << ")";
  }
}

// Cached decoding (prefix, dual, sparse, threshold) in cuda-fp32: the reference's tokens.
TEST(CudaFp32, CacheGoldensEqual) {
  auto gpu = make_cuda_backend(0, true);
  for (const char* fixture : {"llada_tiny", "dream_tiny"}) {
    const auto dir = test::fixtures_dir() / fixture;
    Model m(dir.string(), *gpu);
    auto g = nlohmann::json::parse(test::read_file(dir / "cache_goldens.json"));
    ASSERT_GE(g["cases"].size(), 15u);
    for (const auto& c : g["cases"]) {
      const auto prompt = c["prompt_tokens"].get<std::vector<int32_t>>();
      GenerateResult r;
      if (m.family().default_sampler() == SamplerKind::Llada) {
        GenerateOptions o = test::golden_options(c);
        o.cache = test::golden_cache(c);
        o.threshold = test::golden_threshold(c);
        r = llada_generate(m, prompt, o);
      } else {
        DreamOptions o = test::dream_golden_options(c);
        o.cache = test::golden_cache(c);
        o.threshold = test::golden_threshold(c);
        r = dream_generate(m, prompt, o);
      }
      EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
          << fixture << " " << c["name"] << " (min margin " << c["min_margin"] << ")";
    }
  }
}

}  // namespace
}  // namespace mosaic
