// Key/value cache kernels: writing a step's fresh rows into a cache, and Sparse-dLLM's
// attention-guided eviction (score, max-pool, keep the top rows).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void scatter_rows(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out) {
  for (int64_t i = 0; i < rows; ++i) std::memcpy(out + idx[i] * d, x + i * d, static_cast<size_t>(d) * sizeof(float));
}

void cache_scores(const float* q_block, int64_t block_rows, const float* k, const int32_t* outside, int64_t n,
                  int heads, int kv_heads, int hd, int kernel, float* qbar, float* pooled) {
  const int64_t qd = static_cast<int64_t>(heads) * hd, kvd = static_cast<int64_t>(kv_heads) * hd;
  const int group = heads / kv_heads;
  // The mean query of each head first: mean_b(q_b) . k = mean_b(q_b . k).
  for (int64_t e = 0; e < qd; ++e) {
    float s = 0.f;
    for (int64_t b = 0; b < block_rows; ++b) s += q_block[b * qd + e];
    qbar[e] = s / static_cast<float>(block_rows);
  }
  std::vector<float> score(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    const float* kr = k + static_cast<int64_t>(outside[j]) * kvd;
    float sum = 0.f;
    for (int h = 0; h < heads; ++h) {
      const float* qh = qbar + static_cast<int64_t>(h) * hd;
      const float* kh = kr + static_cast<int64_t>(h / group) * hd;
      float dot = 0.f;
      for (int e = 0; e < hd; ++e) dot += qh[e] * kh[e];
      sum += dot;
    }
    score[j] = sum / static_cast<float>(heads);
  }
  const int64_t half = kernel / 2;
  for (int64_t j = 0; j < n; ++j) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = std::max<int64_t>(0, j - half); i <= std::min(n - 1, j + half); ++i) m = std::max(m, score[i]);
    pooled[j] = m;
  }
}

void top_rows(const float* scores, int64_t n, int64_t keep, int32_t* kept) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // NaN scores (a diverged model) rank last, so the order stays a strict weak one.
  auto key = [&](int32_t i) { return std::isnan(scores[i]) ? -std::numeric_limits<float>::infinity() : scores[i]; };
  auto before = [&](int32_t a, int32_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); };
  std::nth_element(idx.begin(), idx.begin() + keep, idx.end(), before);
  std::sort(idx.begin(), idx.begin() + keep);
  std::copy(idx.begin(), idx.begin() + keep, kept);
}

void cache_select(const float* q_block, int64_t block_rows, const float* k, const float* v, const int32_t* outside,
                  int64_t n, int heads, int kv_heads, int hd, int kernel, int64_t keep, float* scores, int32_t* kept,
                  float* k_cache, float* v_cache) {
  float* qbar = scores + n;
  cache_scores(q_block, block_rows, k, outside, n, heads, kv_heads, hd, kernel, qbar, scores);
  top_rows(scores, n, keep, kept);
  const int64_t kvd = static_cast<int64_t>(kv_heads) * hd;
  for (int64_t r = 0; r < keep; ++r) {
    const int64_t src = outside[kept[r]];
    std::memcpy(k_cache + r * kvd, k + src * kvd, static_cast<size_t>(kvd) * sizeof(float));
    std::memcpy(v_cache + r * kvd, v + src * kvd, static_cast<size_t>(kvd) * sizeof(float));
  }
}

}  // namespace mosaic::cpu
