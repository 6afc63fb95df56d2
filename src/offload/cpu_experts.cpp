#include "offload/cpu_experts.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace mosaic::offload {

namespace {

inline float load(const void* p, int64_t i, bool bf16) {
  if (bf16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

// out[i, o] = sum_k x[i, k] * W[o, k] for n rows (x fp32 [n, k], W [m, k] bf16 or fp32): one
// pass over W for all n rows, since W's bytes are what a CPU expert costs.
void rows_times_weights(const float* x, int64_t n, int64_t k, const void* W, int64_t m, bool bf16, float* out) {
  std::vector<float> wrow(static_cast<size_t>(k));
  for (int64_t o = 0; o < m; ++o) {
    if (bf16) {
      const auto* src = static_cast<const uint16_t*>(W) + o * k;
      for (int64_t c = 0; c < k; ++c) {
        const uint32_t bits = static_cast<uint32_t>(src[c]) << 16;
        std::memcpy(&wrow[c], &bits, 4);
      }
    } else {
      std::memcpy(wrow.data(), static_cast<const float*>(W) + o * k, static_cast<size_t>(k) * 4);
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * k;
      float acc = 0.f;
      for (int64_t c = 0; c < k; ++c) acc += xi[c] * wrow[c];
      out[i * m + o] = acc;
    }
  }
}

}  // namespace

int64_t cpu_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* w, int top_k,
                    int64_t ffn, const std::vector<const void*>& host, bool bf16, const uint8_t* on_gpu, float* y) {
  const int64_t experts = static_cast<int64_t>(host.size()) / 3;
  std::memset(y, 0, static_cast<size_t>(rows * d) * sizeof(float));
  // Each CPU expert's (row, weight) pairs, in row order.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(experts));
  int64_t pairs = 0;
  for (int64_t i = 0; i < rows * top_k; ++i) {
    const int32_t e = ids[i];
    MOSAIC_CHECK(e >= 0 && e < experts, "cpu experts: pair {} is routed to expert {} of {}", i, e, experts);
    if (on_gpu[e]) continue;
    routed[e].emplace_back(i / top_k, w[i]);
    ++pairs;
  }
  std::vector<int32_t> work;
  for (int32_t e = 0; e < experts; ++e)
    if (!routed[e].empty()) work.push_back(e);
  // Each expert's weighted output rows, then one pass adding them in expert order per row (the
  // same order whatever the thread count).
  std::vector<std::vector<float>> out(work.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t t = 0; t < work.size(); ++t) {
    const int32_t e = work[t];
    const auto& list = routed[e];
    const int64_t n = static_cast<int64_t>(list.size());
    std::vector<float> x(static_cast<size_t>(n * d)), g(static_cast<size_t>(n * ffn)), u(g.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) x[i * d + c] = load(h, list[i].first * d + c, bf16);
    rows_times_weights(x.data(), n, d, host[3 * e], ffn, bf16, g.data());
    rows_times_weights(x.data(), n, d, host[3 * e + 1], ffn, bf16, u.data());
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    out[t].resize(static_cast<size_t>(n * d));
    rows_times_weights(g.data(), n, ffn, host[3 * e + 2], d, bf16, out[t].data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) out[t][i * d + c] *= list[i].second;
  }
  for (size_t t = 0; t < work.size(); ++t) {
    const auto& list = routed[work[t]];
    for (size_t i = 0; i < list.size(); ++i) {
      float* yr = y + list[i].first * d;
      const float* o = out[t].data() + i * d;
      for (int64_t c = 0; c < d; ++c) yr[c] += o[c];
    }
  }
  return pairs;
}

}  // namespace mosaic::offload
