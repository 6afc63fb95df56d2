// The bf16 MoE kernels against the CPU's: the router's choice on the device (moe_route.cu) and
// the grouped expert GEMMs (moe_grouped.cu), on random data of shapes with and without tails.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <memory>

#include "backend/cpu/kernels.h"
#include "bf16_buffers.h"

namespace mosaic {
namespace {

std::mt19937 rng(2026);

using test::Dev;

TEST(MoeKernels, DeviceSelectionEqualsTheCpuRule) {
  struct Case {
    MoeRouting r;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{Router::SigmoidGroups, 256, 8, 8, 4, true, 2.5f}, true},   // LLaDA2.0-mini
      {{Router::SigmoidGroups, 16, 4, 4, 2, true, 2.5f}, true},    // the tiny fixture
      {{Router::SigmoidGroups, 64, 1, 8, 4, true, 1.0f}, false},   // top 1: no normalisation
      {{Router::Softmax, 64, 8, 1, 1, false, 1.0f}, false},        // LLaDA-MoE: raw probabilities
      {{Router::Softmax, 40, 3, 1, 1, true, 1.0f}, true},          // renormalised, with a bias
  };
  const int64_t rows = 1000;
  for (const Case& c : cases) {
    const MoeRouting& r = c.r;
    ASSERT_TRUE(cuda::moe_select_supported(r));
    std::normal_distribution<float> dist(0.f, 2.f);
    std::vector<float> logits(static_cast<size_t>(rows * r.experts));
    for (float& v : logits) v = dist(rng);
    const test::HostBf16 bias = test::random_bf16(rng, static_cast<size_t>(r.experts), 0.05f);
    std::vector<int32_t> ids(static_cast<size_t>(rows * r.top_k));
    std::vector<float> w(ids.size());
    cpu::moe_select(logits.data(), rows, c.bias ? bias.f.data() : nullptr, r, ids.data(), w.data());
    Dev<float> dl(logits), dw(w.size());
    Dev<int32_t> di(ids.size());
    test::DevBuf db(bias.bits);
    cuda::moe_select(dl.p, rows, c.bias ? db.bf() : nullptr, r, di.p, dw.p, 0);
    CUDA_CHECK(cudaGetLastError());
    const auto gi = di.get();
    const auto gw = dw.get();
    int64_t same = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const bool eq = std::equal(gi.begin() + i * r.top_k, gi.begin() + (i + 1) * r.top_k, ids.begin() + i * r.top_k);
      same += eq;
      if (eq)
        for (int j = 0; j < r.top_k; ++j) EXPECT_NEAR(gw[i * r.top_k + j], w[i * r.top_k + j], 1e-5 * r.routed_scale);
    }
    // expf on the device and on the host may differ by an ulp: a near tie could go either way.
    EXPECT_GE(same, rows - 1) << r.experts << " experts, top " << r.top_k;
  }
}

// Routing with every expert distinct per row; some experts get no row at all.
std::vector<int32_t> random_ids(int64_t rows, int k, int experts, int used) {
  std::vector<int32_t> ids;
  std::vector<int32_t> pool(static_cast<size_t>(used));
  std::iota(pool.begin(), pool.end(), 0);
  for (int64_t i = 0; i < rows; ++i) {
    std::shuffle(pool.begin(), pool.end(), rng);
    ids.insert(ids.end(), pool.begin(), pool.begin() + k);
  }
  (void)experts;
  return ids;
}

TEST(MoeKernels, GroupedExpertsMatchTheCpu) {
  struct Shape {
    int64_t rows, d, ffn;
    int experts, k, used;
  };
  const std::vector<Shape> shapes = {
      {300, 256, 128, 64, 4, 64},   // many rows per expert, full tiles
      {1, 256, 128, 64, 4, 40},     // one row
      {37, 64, 16, 16, 4, 12},      // the tiny fixture: K and N tails, unused experts
      {130, 136, 24, 32, 8, 20},    // tails in every dimension
      {2048, 512, 64, 256, 8, 256}, // LLaDA2.0-mini's routing at a small width
  };
  for (const Shape& s : shapes) {
    ASSERT_TRUE(cuda::moe_grouped_supported(s.d, s.ffn, s.experts));
    const test::HostBf16 h = test::random_bf16(rng, static_cast<size_t>(s.rows * s.d), 1.f);
    const test::HostBf16 x = test::random_bf16(rng, static_cast<size_t>(s.rows * s.d), 1.f);
    std::vector<test::HostBf16> wts;
    for (int e = 0; e < s.experts; ++e) {
      wts.push_back(test::random_bf16(rng, static_cast<size_t>(s.ffn * s.d), 0.1f));  // gate
      wts.push_back(test::random_bf16(rng, static_cast<size_t>(s.ffn * s.d), 0.1f));  // up
      wts.push_back(test::random_bf16(rng, static_cast<size_t>(s.d * s.ffn), 0.1f));  // down
    }
    const std::vector<int32_t> ids = random_ids(s.rows, s.k, s.experts, s.used);
    std::uniform_real_distribution<float> uw(0.1f, 1.f);
    std::vector<float> w(ids.size());
    for (float& v : w) v = uw(rng);

    std::vector<float> ref = x.f;
    std::vector<const void*> host_experts;
    for (const auto& t : wts) host_experts.push_back(t.f.data());
    std::vector<float> cws(static_cast<size_t>(s.rows * (2 * s.d + 2 * s.ffn + 2 * s.k)));
    cpu::moe_experts(h.f.data(), s.rows, s.d, ids.data(), w.data(), s.k, s.ffn, host_experts, ref.data(), cws.data());

    std::vector<std::unique_ptr<test::DevBuf>> dev_w;
    std::vector<const void*> table(static_cast<size_t>(3 * s.experts));
    for (int e = 0; e < s.experts; ++e)
      for (int m = 0; m < 3; ++m) {
        dev_w.push_back(std::make_unique<test::DevBuf>(wts[3 * e + m].bits));
        table[static_cast<size_t>(m * s.experts + e)] = dev_w.back()->p;
      }
    Dev<const void*> dt(table);
    test::DevBuf dh(h.bits), dx(x.bits);
    Dev<int32_t> di(ids);
    Dev<float> dwt(w);
    Dev<uint8_t> ws(cuda::moe_grouped_workspace_bytes(s.rows, s.d, s.ffn, s.k));
    Dev<int32_t> meta(static_cast<size_t>(4 * (s.experts + 1)));
    cuda::moe_experts_grouped(dh.bf(), s.rows, s.d, di.p, dwt.p, s.k, s.ffn, s.experts,
                              reinterpret_cast<const cuda::bf16* const*>(dt.p), dx.bf(), ws.p, meta.p, 0);
    CUDA_CHECK(cudaGetLastError());
    const std::vector<float> got = dx.get();
    // The residual's own change: got - x against ref - x (bf16 rounding of x hides nothing).
    std::vector<float> dg(got.size()), dr(ref.size());
    for (size_t i = 0; i < got.size(); ++i) dg[i] = got[i] - x.f[i], dr[i] = ref[i] - x.f[i];
    EXPECT_LT(test::rel_err(dg, dr), 2e-2) << "rows " << s.rows << " d " << s.d << " ffn " << s.ffn << " experts "
                                           << s.experts << " k " << s.k;
    // Deterministic: a second run gives the same bits whatever order the pairs were slotted in.
    test::DevBuf dx2(x.bits);
    cuda::moe_experts_grouped(dh.bf(), s.rows, s.d, di.p, dwt.p, s.k, s.ffn, s.experts,
                              reinterpret_cast<const cuda::bf16* const*>(dt.p), dx2.bf(), ws.p, meta.p, 0);
    EXPECT_EQ(dx2.get(), got);
  }
}

}  // namespace
}  // namespace mosaic
