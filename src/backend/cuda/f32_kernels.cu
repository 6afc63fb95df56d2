// The fp32 verification mode's kernels (`--backend cuda-fp32`): the same math as the CPU
// kernels (backend/cpu/), in fp32 on the GPU, so that a GPU run can be held to the golden
// fixtures token for token. Written for clarity over speed; the bf16 kernels are the product.
// (The plain attention kernel also serves bf16 where the tiled ones do not apply.)
#include <cmath>

#include "backend/cuda/block_sum.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

namespace mosaic::cuda {

namespace {

__global__ void gather_f32_kernel(const int32_t* __restrict__ idx, int64_t rows, const float* __restrict__ src,
                                  int64_t d, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  if (row >= rows) return;
  const float* s = src + static_cast<int64_t>(idx[row]) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[row * d + i] = s[i];
}

// As cpu::rms_norm: the sum of squares in double, y = w * (x * inv).
__global__ void rms_norm_f32_kernel(const float* __restrict__ x, int64_t d, const float* __restrict__ w, float eps,
                                    float* __restrict__ y) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  const float inv = 1.0f / sqrtf(static_cast<float>(block_sum(ss) / static_cast<double>(d)) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) y[row * d + i] = w[i] * (xr[i] * inv);
}

__global__ void rope_f32_kernel(float* __restrict__ x, int64_t rows, int heads, int hd, int rot, int64_t pos0,
                                const float* __restrict__ inv_freq, const int32_t* __restrict__ positions) {
  const int half = rot / 2;
  const int64_t total = rows * heads * half;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(t % half);
    const int64_t rh = t / half;
    const int64_t row = rh / heads;
    const float ang = static_cast<float>(positions ? positions[row] : pos0 + row) * inv_freq[j];
    // Full-precision sin/cos, as the host's libm.
    const float c = cosf(ang), s = sinf(ang);
    float* p = x + rh * hd;
    const float a = p[j], b = p[j + half];
    p[j] = a * c - b * s;
    p[j + half] = b * c + a * s;
  }
}

__global__ void swiglu_f32_kernel(float* __restrict__ g, const float* __restrict__ u, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// One warp per (query row, head): scores against every key, exact max first, then the
// softmax-weighted sum of values; each lane owns hd/32 output dims. Never stores scores.
constexpr int kMaxDimsPerLane = 8;  // hd <= 256

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(bf16* p, float x) { *p = __float2bfloat16(x); }

// One warp per (row, head), fp32 math whatever T is: cuda-fp32's attention, and bf16's where the
// tiled kernels do not apply (head dims other than 64 and 128 with keys in two places).
template <class T>
__global__ void attention_plain_kernel(const T* __restrict__ q, int64_t rows, const T* __restrict__ k,
                                       const T* __restrict__ v, int64_t kv_rows, const T* __restrict__ k2,
                                       const T* __restrict__ v2, int64_t kv_rows2, int heads, int kv_heads, int hd,
                                       float scale, T* __restrict__ out, int64_t block,
                                       const int32_t* __restrict__ positions, int64_t pos0) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (warp >= rows * heads) return;
  const int64_t row = warp / heads;
  const int h = static_cast<int>(warp % heads), kvh = h / (heads / kv_heads);
  const T* qr = q + (row * heads + h) * hd;
  const int64_t kv_ld = static_cast<int64_t>(kv_heads) * hd;
  int64_t n = kv_rows + kv_rows2;
  if (block > 0) {  // block-causal: the keys past the query's block are never read
    const int64_t p = positions ? positions[row] : pos0 + row;
    const int64_t seen = (p / block + 1) * block;
    if (seen < n) n = seen;
  }
  // Key j is row j of (k, v), then row j - kv_rows of (k2, v2).
  auto key = [&](const T* first, const T* second, int64_t j) {
    return (j < kv_rows ? first + j * kv_ld : second + (j - kv_rows) * kv_ld) + static_cast<int64_t>(kvh) * hd;
  };
  auto score = [&](int64_t j) {
    const T* kr = key(k, k2, j);
    float s = 0.f;
    for (int i = lane; i < hd; i += 32) s += to_f(qr[i]) * to_f(kr[i]);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s * scale;
  };
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = fmaxf(mx, score(j));
  double sum = 0;
  float acc[kMaxDimsPerLane] = {};
  for (int64_t j = 0; j < n; ++j) {
    const float p = expf(score(j) - mx);
    sum += p;
    const T* vr = key(v, v2, j);
    for (int i = lane, c = 0; i < hd; i += 32, ++c) acc[c] += p * to_f(vr[i]);
  }
  const float inv = n > 0 ? static_cast<float>(1.0 / sum) : 0.f;
  T* o = out + (row * heads + h) * hd;
  for (int i = lane, c = 0; i < hd; i += 32, ++c) store(o + i, acc[c] * inv);
}

}  // namespace

void gather_rows_f32(const int32_t* idx, int64_t rows, const float* src, int64_t d, float* out, cudaStream_t s) {
  if (rows == 0) return;
  gather_f32_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(idx, rows, src, d, out);
  CUDA_CHECK_LAUNCH();
}

void rms_norm_f32(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y, cudaStream_t s) {
  if (rows == 0) return;
  rms_norm_f32_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(x, d, w, eps, y);
  CUDA_CHECK_LAUNCH();
}

void rope_f32(float* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq,
              const int32_t* positions, cudaStream_t s, int rot) {
  if (rot <= 0) rot = hd;
  const int64_t total = rows * heads * (rot / 2);
  if (total == 0) return;
  rope_f32_kernel<<<grid_for(total, 256), 256, 0, s>>>(x, rows, heads, hd, rot, pos0, inv_freq, positions);
  CUDA_CHECK_LAUNCH();
}

void swiglu_f32(float* g, const float* u, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  swiglu_f32_kernel<<<grid_for(n, 256), 256, 0, s>>>(g, u, n);
  CUDA_CHECK_LAUNCH();
}

namespace {

template <class T>
void attention_plain(const T* q, int64_t rows, const T* k, const T* v, int64_t kv_rows, const T* k2, const T* v2,
                     int64_t kv_rows2, int heads, int kv_heads, int hd, float scale, T* out, cudaStream_t s,
                     int64_t block, const int32_t* positions, int64_t pos0) {
  if (rows == 0) return;
  CUDA_REQUIRE(hd <= 32 * kMaxDimsPerLane && heads % kv_heads == 0,
               "plain attention: head dim " + std::to_string(hd) + " over 256, or heads " + std::to_string(heads) +
                   " not a multiple of kv heads " + std::to_string(kv_heads));
  const int64_t threads = rows * heads * 32;
  attention_plain_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, s>>>(
      q, rows, k, v, kv_rows, k2, v2, kv_rows2, heads, kv_heads, hd, scale, out, block, positions, pos0);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_f32(const float* q, int64_t rows, const float* k, const float* v, int64_t kv_rows, const float* k2,
                   const float* v2, int64_t kv_rows2, int heads, int kv_heads, int hd, float scale, float* out,
                   cudaStream_t s, int64_t block, const int32_t* positions, int64_t pos0) {
  attention_plain(q, rows, k, v, kv_rows, k2, v2, kv_rows2, heads, kv_heads, hd, scale, out, s, block, positions, pos0);
}

void attention_plain_bf16(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, const bf16* k2,
                          const bf16* v2, int64_t kv_rows2, int heads, int kv_heads, int hd, float scale, bf16* out,
                          cudaStream_t s, int64_t block, const int32_t* positions, int64_t pos0) {
  attention_plain(q, rows, k, v, kv_rows, k2, v2, kv_rows2, heads, kv_heads, hd, scale, out, s, block, positions, pos0);
}

}  // namespace mosaic::cuda
