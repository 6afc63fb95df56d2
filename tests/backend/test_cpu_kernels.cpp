// The CPU kernels' own contracts, where the fused forms must equal the plain ones exactly:
// they are the oracle every other backend is held to.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <omp.h>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"

namespace mosaic {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(CpuKernels, RopeAtExplicitPositionsRotatesEachRowAsItsOwnPosition) {
  const int heads = 3, hd = 64;
  const int64_t rows = 5, w = heads * hd;
  const std::vector<int32_t> positions = {4095, 7, 0, 123456, 7};
  auto inv = rope_inv_freq(10000.0, hd);
  auto x = random_floats(static_cast<size_t>(rows * w), 1);
  std::vector<float> got = x;
  cpu::rope(got.data(), rows, heads, hd, 0, inv.data(), positions.data());
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<float> row(x.begin() + i * w, x.begin() + (i + 1) * w);
    cpu::rope(row.data(), 1, heads, hd, positions[i], inv.data());
    EXPECT_EQ(row, std::vector<float>(got.begin() + i * w, got.begin() + (i + 1) * w)) << "row " << i;
  }
  // Rows 1 and 4 share a position and started different: they must still differ.
  EXPECT_NE(std::vector<float>(got.begin() + w, got.begin() + 2 * w),
            std::vector<float>(got.begin() + 4 * w, got.begin() + 5 * w));
}

TEST(CpuKernels, AccumulatingProductEqualsProductThenAdd) {
  for (int64_t rows : {1, 7, 64}) {
    const int64_t k = 300, n = 517;  // n not a multiple of the column blocks
    auto a = random_floats(static_cast<size_t>(rows * k), 2);
    auto w = random_floats(static_cast<size_t>(n * k), 3);
    auto bias = random_floats(static_cast<size_t>(n), 4);
    auto x = random_floats(static_cast<size_t>(rows * n), 5);
    for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
      std::vector<float> product(static_cast<size_t>(rows * n));
      cpu::matmul(a.data(), rows, k, w.data(), b, n, product.data());
      std::vector<float> expect = x;
      for (size_t i = 0; i < expect.size(); ++i) expect[i] += product[i];
      std::vector<float> got = x;
      cpu::matmul(a.data(), rows, k, w.data(), b, n, got.data(), true);
      EXPECT_EQ(got, expect) << "rows " << rows << (b ? " with bias" : "");
    }
  }
}

// Keys in two places (a sparse cache's kept rows, then the block's fresh ones) attend as the
// same keys in one array would: the same softmax over both, up to the order of the sums.
TEST(CpuKernels, AttentionOverTwoKeySourcesEqualsOverTheirConcatenation) {
  const int heads = 8, kv_heads = 2, hd = 32;
  const int64_t rows = 70, n1 = 45, n2 = 19, kv_w = kv_heads * hd, q_w = heads * hd;  // rows > one tile
  auto q = random_floats(static_cast<size_t>(rows * q_w), 6);
  auto k = random_floats(static_cast<size_t>((n1 + n2) * kv_w), 7);
  auto v = random_floats(static_cast<size_t>((n1 + n2) * kv_w), 8);
  std::vector<float> ws(static_cast<size_t>(cpu::kAttentionTile * omp_get_max_threads() * (n1 + n2)));
  const float scale = 0.3f;
  std::vector<float> whole(static_cast<size_t>(rows * q_w)), split(whole.size(), NAN);
  cpu::attention(q.data(), rows, k.data(), v.data(), n1 + n2, heads, kv_heads, hd, scale, whole.data(), ws.data());
  // The second source in its own buffer, as the block's keys are.
  std::vector<float> k2(k.begin() + n1 * kv_w, k.end()), v2(v.begin() + n1 * kv_w, v.end());
  cpu::attention(q.data(), rows, {k.data(), v.data(), n1}, {k2.data(), v2.data(), n2}, heads, kv_heads, hd, scale,
                 split.data(), ws.data());
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(split[i], whole[i], 1e-5f) << "element " << i;
  // Without the second source the result is another one: the test can tell them apart.
  std::vector<float> first(whole.size());
  cpu::attention(q.data(), rows, k.data(), v.data(), n1, heads, kv_heads, hd, scale, first.data(), ws.data());
  float diff = 0.f;
  for (size_t i = 0; i < whole.size(); ++i) diff = std::max(diff, std::fabs(first[i] - whole[i]));
  EXPECT_GT(diff, 1e-2f);
  // Only a second source, the first empty: still the same attention.
  cpu::attention(q.data(), rows, {nullptr, nullptr, 0}, {k.data(), v.data(), n1 + n2}, heads, kv_heads, hd, scale,
                 split.data(), ws.data());
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(split[i], whole[i], 1e-5f) << "element " << i;
}

}  // namespace
}  // namespace mosaic
