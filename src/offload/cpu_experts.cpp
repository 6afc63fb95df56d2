// The CPU part of an offloaded MoE layer: the experts without a GPU slot over the rows routed to
// them, from their host copies. Few rows per expert (a cached step's usual case) run as dot
// products that read each weight once (AVX-512 where the CPU has it); many as an OpenBLAS GEMM.
#include "offload/cpu_experts.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/dtype.h"
#include "core/error.h"

namespace mosaic::offload {

namespace {

bool generic_only = false;

inline float load(const void* p, int64_t i, bool bf16) {
  if (bf16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

// out[i, o] = sum_k x[i, k] * W[o, k] for n rows (x fp32 [n, k], W [m, k] bf16 or fp32).

// Few rows (a cached step's experts see 1-8): one pass over W, each weight row converted once
// and dotted with every row; eight partial sums per dot so the compiler vectorizes it.
void dot_rows_generic(const float* x, int64_t n, int64_t k, const void* W, int64_t m, bool bf16, float* out) {
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
      float part[8] = {};
      int64_t c = 0;
      for (; c + 8 <= k; c += 8)
        for (int j = 0; j < 8; ++j) part[j] += xi[c + j] * wrow[c + j];
      float acc = 0.f;
      for (; c < k; ++c) acc += xi[c] * wrow[c];
      for (int j = 0; j < 8; ++j) acc += part[j];
      out[i * m + o] = acc;
    }
  }
}

#if defined(__x86_64__)
// The same with AVX-512: 16 weights at a time (bf16 widened by a shift), up to four rows per
// pass over a weight row, masked tails.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void dot_rows_avx512(const float* x, int64_t n, int64_t k,
                                                                          const void* W, int64_t m, bool bf16,
                                                                          float* out) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (k % 16)) - 1);
  const int64_t full = k - k % 16;
  for (int64_t o = 0; o < m; ++o) {
    const auto* wb = static_cast<const uint16_t*>(W) + o * k;
    const auto* wf = static_cast<const float*>(W) + o * k;
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, n - i0));
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t c = 0; c < full; c += 16) {
        const __m512 w = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + c))), 16))
                              : _mm512_loadu_ps(wf + c);
        for (int r = 0; r < rows; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (i0 + r) * k + c), w, acc[r]);
      }
      if (tail) {
        const __m512 w = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                    _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(tail, wb + full)), 16))
                              : _mm512_maskz_loadu_ps(tail, wf + full);
        for (int r = 0; r < rows; ++r)
          acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x + (i0 + r) * k + full), w, acc[r]);
      }
      for (int r = 0; r < rows; ++r) out[(i0 + r) * m + o] = _mm512_reduce_add_ps(acc[r]);
    }
  }
}
#endif

bool use_avx512() {
#if defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return yes && !generic_only;
#else
  return false;
#endif
}

// Many rows: the weights widened to fp32 once, then an OpenBLAS GEMM (one thread: the experts
// run in parallel already).
void rows_times_weights(const float* x, int64_t n, int64_t k, const void* W, int64_t m, bool bf16, float* out) {
  if (n < 8) {
#if defined(__x86_64__)
    if (use_avx512()) return dot_rows_avx512(x, n, k, W, m, bf16, out);
#endif
    return dot_rows_generic(x, n, k, W, m, bf16, out);
  }
  const float* wf = static_cast<const float*>(W);
  thread_local std::vector<float> widened;
  if (bf16) {
    widened.resize(static_cast<size_t>(m * k));
    const auto* src = static_cast<const uint16_t*>(W);
    for (int64_t i = 0; i < m * k; ++i) widened[i] = bf16_to_f32(src[i]);
    wf = widened.data();
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
              1.0f, x, static_cast<int>(k), wf, static_cast<int>(k), 0.0f, out, static_cast<int>(m));
}

}  // namespace

int64_t cpu_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* w, int top_k,
                    int64_t ffn, const std::vector<const void*>& host, bool bf16, const uint8_t* on_gpu, float* y) {
  const int64_t experts = static_cast<int64_t>(host.size()) / 3;
  // The experts run in parallel already: OpenBLAS's own threads would oversubscribe the cores.
  static const bool one_blas_thread = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)one_blas_thread;
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

void cpu_experts_use_simd(bool on) { generic_only = !on; }

}  // namespace mosaic::offload
