// The CPU part of an offloaded MoE layer: the experts without a GPU slot over the rows routed to
// them, from their host copies. Few rows per expert (a cached step's usual case) run as dot
// products that read each weight once (AVX-512 where the CPU has it), each expert split into
// pieces of output rows so that all cores read weights even when a layer has few CPU experts;
// many rows as one OpenBLAS GEMM per expert.
#include "offload/cpu_experts.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
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

// out[i * ldo + o] = sum_k x[i, k] * W[o, k] for n rows (x fp32 [n, k], W [m, k] bf16 or fp32).

// Few rows (a cached step's experts see 1-8): one pass over W, each weight row converted once
// and dotted with every row; eight partial sums per dot so the compiler vectorizes it.
void dot_rows_generic(const float* x, int64_t n, int64_t k, const void* W, int64_t m, bool bf16, float* out,
                      int64_t ldo) {
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
      out[i * ldo + o] = acc;
    }
  }
}

#if defined(__x86_64__)
// The same with AVX-512: 16 weights at a time (bf16 widened by a shift), up to four rows per
// pass over a weight row, masked tails.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void dot_rows_avx512(const float* x, int64_t n, int64_t k,
                                                                          const void* W, int64_t m, bool bf16,
                                                                          float* out, int64_t ldo) {
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
      for (int r = 0; r < rows; ++r) out[(i0 + r) * ldo + o] = _mm512_reduce_add_ps(acc[r]);
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

// Few rows: output rows [o0, o1) of W [m, k], into out (stride ldo).
void dot_rows(const float* x, int64_t n, int64_t k, const void* W, int64_t o0, int64_t o1, bool bf16, float* out,
              int64_t ldo) {
  const size_t es = bf16 ? 2 : 4;
  const void* Wc = static_cast<const std::byte*>(W) + static_cast<size_t>(o0 * k) * es;
#if defined(__x86_64__)
  if (use_avx512()) return dot_rows_avx512(x, n, k, Wc, o1 - o0, bf16, out + o0, ldo);
#endif
  dot_rows_generic(x, n, k, Wc, o1 - o0, bf16, out + o0, ldo);
}

// Many rows: the weights widened to fp32 once, then an OpenBLAS GEMM (one thread: the experts
// run in parallel already).
void gemm_rows(const float* x, int64_t n, int64_t k, const void* W, int64_t m, bool bf16, float* out) {
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

// Below this many rows an expert runs as dot products, split into pieces of output rows that
// different threads take (a cached step's CPU experts are few and see 1-8 rows each, so
// splitting within an expert is what keeps every core reading weights); from it on, one GEMM.
constexpr int64_t kGemmRows = 8;
constexpr size_t kPieceBytes = size_t{128} << 10;  // weights one piece reads

// One CPU expert of a layer: its (row, weight) pairs in row order and its buffers.
struct CpuExpert {
  int32_t e = 0;
  std::vector<std::pair<int64_t, float>> rows;
  std::vector<float> x, g, u, out;  // [n, d], [n, ffn] x2, [n, d]
};

// Work of one parallel phase: expert t's output rows [o0, o1) (the whole expert for a GEMM one).
struct Piece {
  int32_t t;
  int64_t o0, o1;
};

std::vector<Piece> pieces(const std::vector<CpuExpert>& work, int64_t m, int64_t k, size_t es) {
  const int64_t step = std::max<int64_t>(1, static_cast<int64_t>(kPieceBytes / (static_cast<size_t>(k) * es)));
  std::vector<Piece> p;
  for (size_t t = 0; t < work.size(); ++t) {
    if (static_cast<int64_t>(work[t].rows.size()) >= kGemmRows) {
      p.push_back({static_cast<int32_t>(t), 0, m});
      continue;
    }
    for (int64_t o = 0; o < m; o += step) p.push_back({static_cast<int32_t>(t), o, std::min(m, o + step)});
  }
  return p;
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
  std::vector<CpuExpert> work;
  for (int32_t e = 0; e < experts; ++e)
    if (!routed[e].empty()) work.push_back({e, std::move(routed[e]), {}, {}, {}, {}});
  const size_t es = bf16 ? 2 : 4;
  for (CpuExpert& x : work) {
    const size_t n = x.rows.size();
    x.x.resize(n * static_cast<size_t>(d));
    x.g.resize(n * static_cast<size_t>(ffn));
    x.u.resize(x.g.size());
    x.out.resize(x.x.size());
  }
  // Gate and up by pieces of their ffn rows (SwiGLU on each piece's columns), then down by
  // pieces of its d rows; every output element is one piece's, whatever the thread count.
  const std::vector<Piece> up_pieces = pieces(work, ffn, d, es), down_pieces = pieces(work, d, ffn, es);
  // Threads for experts of at least a piece: tiny models' would pay more for the phases'
  // barriers than they gain.
  const bool threads = static_cast<size_t>(3 * d * ffn) * es >= kPieceBytes;
#pragma omp parallel if (threads)
  {
#pragma omp for schedule(dynamic, 1)
    for (size_t t = 0; t < work.size(); ++t) {
      CpuExpert& x = work[t];
      for (size_t i = 0; i < x.rows.size(); ++i)
        for (int64_t c = 0; c < d; ++c) x.x[i * d + c] = load(h, x.rows[i].first * d + c, bf16);
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t p = 0; p < up_pieces.size(); ++p) {
      const Piece& q = up_pieces[p];
      CpuExpert& x = work[q.t];
      const int64_t n = static_cast<int64_t>(x.rows.size());
      if (n >= kGemmRows) {
        gemm_rows(x.x.data(), n, d, host[3 * x.e], ffn, bf16, x.g.data());
        gemm_rows(x.x.data(), n, d, host[3 * x.e + 1], ffn, bf16, x.u.data());
      } else {
        dot_rows(x.x.data(), n, d, host[3 * x.e], q.o0, q.o1, bf16, x.g.data(), ffn);
        dot_rows(x.x.data(), n, d, host[3 * x.e + 1], q.o0, q.o1, bf16, x.u.data(), ffn);
      }
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = q.o0; c < q.o1; ++c) {
          float& g = x.g[i * ffn + c];
          g = g / (1.0f + std::exp(-g)) * x.u[i * ffn + c];
        }
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t p = 0; p < down_pieces.size(); ++p) {
      const Piece& q = down_pieces[p];
      CpuExpert& x = work[q.t];
      const int64_t n = static_cast<int64_t>(x.rows.size());
      if (n >= kGemmRows) gemm_rows(x.g.data(), n, ffn, host[3 * x.e + 2], d, bf16, x.out.data());
      else dot_rows(x.g.data(), n, ffn, host[3 * x.e + 2], q.o0, q.o1, bf16, x.out.data(), d);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = q.o0; c < q.o1; ++c) x.out[i * d + c] *= x.rows[i].second;
    }
  }
  // Each expert's weighted rows added in expert order per row (the same order whatever the
  // thread count).
  for (const CpuExpert& x : work)
    for (size_t i = 0; i < x.rows.size(); ++i) {
      float* yr = y + x.rows[i].first * d;
      const float* o = x.out.data() + i * d;
      for (int64_t c = 0; c < d; ++c) yr[c] += o[c];
    }
  return pairs;
}

void cpu_experts_use_simd(bool on) { generic_only = !on; }

}  // namespace mosaic::offload
