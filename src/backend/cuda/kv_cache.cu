// Key/value cache kernels: writing a step's fresh rows into a cache, and the scoring half of
// Sparse-dLLM's eviction (Backend::cache_select; the top-k selection runs on the host for now).
// Each kernel takes bf16 or fp32 rows (the `cuda` and `cuda-fp32` modes); the math is fp32.
//
// The scores are held to cpu::cache_scores bit for bit: the same order of additions, each
// product and sum rounded on its own (__fmul_rn / __fadd_rn: no fused multiply-add, which
// the CPU build, compiled for baseline x86-64, does not use either). The selection then keeps
// exactly the CPU's rows, ties included; bf16 inputs widen to fp32 exactly, so this holds in
// both modes.
#include <cuda_bf16.h>

#include <cmath>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

namespace mosaic::cuda {

namespace {

__device__ inline float to_f32(float x) { return x; }
__device__ inline float to_f32(bf16 x) { return __bfloat162float(x); }

// out[idx[row]] = x[row], one block per row, in words of type W (16 bytes where the row
// allows it, else one element).
template <typename W>
__global__ void scatter_rows_kernel(const W* __restrict__ x, int64_t words, const int32_t* __restrict__ idx,
                                    int64_t rows, W* __restrict__ out) {
  const int64_t row = blockIdx.x;
  if (row >= rows) return;
  const W* s = x + row * words;
  W* o = out + static_cast<int64_t>(idx[row]) * words;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) o[i] = s[i];
}

// qbar[e] = (sum over b of q[b, e]) / block_rows: one thread per column, b in order.
template <typename T>
__global__ void mean_query_kernel(const T* __restrict__ q, int64_t block_rows, int64_t qd, float* __restrict__ qbar) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < qd;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t b = 0; b < block_rows; ++b) s = __fadd_rn(s, to_f32(q[b * qd + e]));
    qbar[e] = s / static_cast<float>(block_rows);
  }
}

constexpr int kScoreWarps = 8;  // outside rows per block, one per warp

// score[j] = (sum over heads h of qbar_h . k[outside[j]]_(h / group)) / heads. One warp per
// row j; lane l takes the dot products of heads l, l + 32, ... (each summed over e in order,
// as the CPU does), and lane 0 adds them up in order of h. qbar sits in shared memory with a
// stride of hd + 1 per head, so that the 32 lanes, reading the same e of 32 heads, hit 32
// different banks.
template <typename T>
__global__ void cache_score_kernel(const float* __restrict__ qbar, const T* __restrict__ k,
                                   const int32_t* __restrict__ outside, int64_t n, int heads, int kv_heads, int hd,
                                   float* __restrict__ score) {
  extern __shared__ float smem[];
  const int ld = hd + 1;
  float* q = smem;                          // [heads][hd + 1]
  float* dots = smem + heads * ld;          // [kScoreWarps][heads]
  for (int i = threadIdx.x; i < heads * hd; i += blockDim.x) q[(i / hd) * ld + i % hd] = qbar[i];
  __syncthreads();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = heads / kv_heads;
  const int64_t kvd = static_cast<int64_t>(kv_heads) * hd;
  float* my_dots = dots + warp * heads;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kScoreWarps) + warp; j < n;
       j += static_cast<int64_t>(gridDim.x) * kScoreWarps) {
    const T* kr = k + static_cast<int64_t>(outside[j]) * kvd;
    for (int h = lane; h < heads; h += 32) {
      const float* qh = q + h * ld;
      const T* kh = kr + static_cast<int64_t>(h / group) * hd;
      float dot = 0.f;
      for (int e = 0; e < hd; ++e) dot = __fadd_rn(dot, __fmul_rn(qh[e], to_f32(kh[e])));
      my_dots[h] = dot;
    }
    __syncwarp();
    if (lane == 0) {
      float sum = 0.f;
      for (int h = 0; h < heads; ++h) sum = __fadd_rn(sum, my_dots[h]);
      score[j] = sum / static_cast<float>(heads);
    }
    __syncwarp();  // my_dots is rewritten for the next row
  }
}

// pooled[j] = max of score[j - kernel/2 .. j + kernel/2], the window clipped to [0, n) (the
// -inf padding never wins). score and pooled must not overlap.
__global__ void max_pool_kernel(const float* __restrict__ score, int64_t n, int kernel, float* __restrict__ pooled) {
  const int64_t half = kernel / 2;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float m = -INFINITY;
    const int64_t lo = j - half < 0 ? 0 : j - half, hi = j + half > n - 1 ? n - 1 : j + half;
    for (int64_t i = lo; i <= hi; ++i) m = fmaxf(m, score[i]);
    pooled[j] = m;
  }
}

template <typename T>
void scatter_rows_t(const T* x, int64_t d, const int32_t* idx, int64_t rows, T* out, cudaStream_t s) {
  if (rows == 0 || d == 0) return;
  const int64_t bytes = d * static_cast<int64_t>(sizeof(T));
  const bool wide = bytes % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (wide)
    scatter_rows_kernel<<<static_cast<unsigned>(rows), 128, 0, s>>>(reinterpret_cast<const uint4*>(x), bytes / 16, idx,
                                                                   rows, reinterpret_cast<uint4*>(out));
  else
    scatter_rows_kernel<<<static_cast<unsigned>(rows), 128, 0, s>>>(x, d, idx, rows, out);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void cache_scores_t(const T* q_block, int64_t block_rows, const T* k, const int32_t* outside, int64_t n, int heads,
                    int kv_heads, int hd, int kernel, float* qbar, float* raw, float* pooled, cudaStream_t s) {
  const int64_t qd = static_cast<int64_t>(heads) * hd;
  CUDA_REQUIRE(heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && block_rows > 0 && kernel >= 1,
               "cuda cache_scores: heads " + std::to_string(heads) + " / kv heads " + std::to_string(kv_heads) +
                   ", block rows " + std::to_string(block_rows) + ", kernel " + std::to_string(kernel));
  mean_query_kernel<<<grid_for(qd, 256), 256, 0, s>>>(q_block, block_rows, qd, qbar);
  CUDA_CHECK_LAUNCH();
  if (n == 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(heads) * (hd + 1 + kScoreWarps);  // qbar, dots
  CUDA_REQUIRE(smem <= 48 * 1024, "cuda cache_scores: " + std::to_string(heads) + " heads of " + std::to_string(hd) +
                                      " need " + std::to_string(smem) + " B of shared memory, over 48 KiB");
  cache_score_kernel<<<grid_for(n, kScoreWarps), kScoreWarps * 32, smem, s>>>(qbar, k, outside, n, heads, kv_heads,
                                                                               hd, raw);
  CUDA_CHECK_LAUNCH();
  max_pool_kernel<<<grid_for(n, 256), 256, 0, s>>>(raw, n, kernel, pooled);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void scatter_rows(const bf16* x, int64_t d, const int32_t* idx, int64_t rows, bf16* out, cudaStream_t s) {
  scatter_rows_t(x, d, idx, rows, out, s);
}

void scatter_rows_f32(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out, cudaStream_t s) {
  scatter_rows_t(x, d, idx, rows, out, s);
}

void cache_scores(const bf16* q_block, int64_t block_rows, const bf16* k, const int32_t* outside, int64_t n, int heads,
                  int kv_heads, int hd, int kernel, float* qbar, float* raw, float* pooled, cudaStream_t s) {
  cache_scores_t(q_block, block_rows, k, outside, n, heads, kv_heads, hd, kernel, qbar, raw, pooled, s);
}

void cache_scores_f32(const float* q_block, int64_t block_rows, const float* k, const int32_t* outside, int64_t n,
                      int heads, int kv_heads, int hd, int kernel, float* qbar, float* raw, float* pooled,
                      cudaStream_t s) {
  cache_scores_t(q_block, block_rows, k, outside, n, heads, kv_heads, hd, kernel, qbar, raw, pooled, s);
}

}  // namespace mosaic::cuda
