// Memory-bound kernels: embedding / row gathers, RMSNorm, rotary embedding, SwiGLU,
// residual adds, guidance. bf16 in memory, fp32 in registers, 16-byte accesses.
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/block_sum.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

namespace mosaic::cuda {

namespace {

constexpr int kVec = 8;  // bf16 per 16-byte access

struct alignas(16) Vec8 {
  __nv_bfloat162 h[4];
};

__device__ inline float silu(float x) { return x / (1.0f + __expf(-x)); }

__global__ void gather_rows_kernel(const int32_t* __restrict__ idx, int64_t rows, const bf16* __restrict__ src,
                                   int64_t d, bf16* __restrict__ out) {
  const int64_t row = blockIdx.x;
  if (row >= rows) return;
  const int64_t from = idx[row];
  const Vec8* s = reinterpret_cast<const Vec8*>(src + from * d);
  Vec8* o = reinterpret_cast<Vec8*>(out + row * d);
  for (int64_t i = threadIdx.x; i < d / kVec; i += blockDim.x) o[i] = s[i];
}


// RMSNorm as LLaDA/Qwen2 compute it: normalise in fp32, round to bf16, then scale by the
// bf16 weight (the product rounded again). Any width; reads each row twice.
__global__ void rms_norm_two_pass_kernel(const bf16* __restrict__ x, int64_t d, const bf16* __restrict__ w, float eps,
                                bf16* __restrict__ y) {
  const int64_t row = blockIdx.x;
  const Vec8* xr = reinterpret_cast<const Vec8*>(x + row * d);
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d / kVec; i += blockDim.x) {
    Vec8 v = xr[i];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float2 f = __bfloat1622float2(v.h[j]);
      ss += f.x * f.x + f.y * f.y;
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(d) + eps);
  const Vec8* wr = reinterpret_cast<const Vec8*>(w);
  Vec8* yr = reinterpret_cast<Vec8*>(y + row * d);
  for (int64_t i = threadIdx.x; i < d / kVec; i += blockDim.x) {
    Vec8 v = xr[i], wv = wr[i], out;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float2 f = __bfloat1622float2(v.h[j]);
      float2 n = __bfloat1622float2(__floats2bfloat162_rn(f.x * inv, f.y * inv));
      float2 ww = __bfloat1622float2(wv.h[j]);
      out.h[j] = __floats2bfloat162_rn(ww.x * n.x, ww.y * n.y);
    }
    yr[i] = out;
  }
}

// The same with the row held in registers (kPer 16-byte vectors per thread): one read of x.
// Thread t takes vectors t, t + 256, ... as the two-pass form does, so the sum, and so every
// output bit, is the same.
template <int kPer>
__global__ void rms_norm_regs_kernel(const bf16* __restrict__ x, int64_t d, const bf16* __restrict__ w, float eps,
                                     bf16* __restrict__ y) {
  const int64_t row = blockIdx.x;
  const int n_vec = static_cast<int>(d / kVec);
  const Vec8* xr = reinterpret_cast<const Vec8*>(x + row * d);
  Vec8 v[kPer];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < n_vec) {
      v[k] = xr[i];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float2 f = __bfloat1622float2(v[k].h[j]);
        ss += f.x * f.x + f.y * f.y;
      }
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(d) + eps);
  const Vec8* wr = reinterpret_cast<const Vec8*>(w);
  Vec8* yr = reinterpret_cast<Vec8*>(y + row * d);
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= n_vec) break;
    Vec8 wv = wr[i], out;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float2 f = __bfloat1622float2(v[k].h[j]);
      float2 n = __bfloat1622float2(__floats2bfloat162_rn(f.x * inv, f.y * inv));
      float2 ww = __bfloat1622float2(wv.h[j]);
      out.h[j] = __floats2bfloat162_rn(ww.x * n.x, ww.y * n.y);
    }
    yr[i] = out;
  }
}

// The rotation of the pair (a, b) by the angle with cosine c and sine s, each product and sum
// rounded as the CPU kernel rounds them: explicit roundings, so no FMA contraction can make the
// two CUDA forms (or two compiler versions) disagree in the last bit.
__device__ inline float rotate_a(float a, float b, float c, float s) { return __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)); }
__device__ inline float rotate_b(float a, float b, float c, float s) { return __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)); }

// One thread per (row, head, frequency): rotates the pair (j, j + rot/2) in fp32. Any head_dim;
// the dims past rot stay.
__global__ void rope_pairwise_kernel(bf16* __restrict__ x, int64_t rows, int heads, int hd, int rot, int64_t pos0,
                            const float* __restrict__ inv_freq, const int32_t* __restrict__ positions) {
  const int half = rot / 2;
  const int64_t total = rows * heads * half;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(t % half);
    const int64_t rh = t / half;
    const int64_t row = rh / heads;
    const float ang = static_cast<float>(positions ? positions[row] : pos0 + row) * inv_freq[j];
    float s, c;
    sincosf(ang, &s, &c);
    bf16* p = x + rh * hd;
    const float a = __bfloat162float(p[j]), b = __bfloat162float(p[j + half]);
    p[j] = __float2bfloat16(rotate_a(a, b, c, s));
    p[j + half] = __float2bfloat16(rotate_b(a, b, c, s));
  }
}

// One thread per (row, head, 8 consecutive frequencies): 16-byte loads and stores, and each
// row's angles computed once for all its heads (shared memory) instead of once per head. The
// angle and rotation are the pairwise form's (rotate_a/b), so the output bits are the same.
// blockDim = (heads * hd / 16, rows per block); hd / 2 a multiple of 8.
__global__ void rope_vec8_kernel(bf16* __restrict__ x, int64_t rows, int heads, int hd, int64_t pos0,
                                 const float* __restrict__ inv_freq, const int32_t* __restrict__ positions) {
  extern __shared__ float2 cos_sin[];  // [blockDim.y][hd / 2]
  const int half = hd / 2;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  float2* cs = cos_sin + threadIdx.y * half;
  if (row < rows) {
    const float pos = static_cast<float>(positions ? positions[row] : pos0 + row);
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
      const float ang = pos * inv_freq[j];
      float s, c;
      sincosf(ang, &s, &c);
      cs[j] = make_float2(c, s);
    }
  }
  __syncthreads();
  if (row >= rows) return;
  const int per_head = half / kVec;
  const int head = threadIdx.x / per_head, j0 = (threadIdx.x % per_head) * kVec;
  bf16* p = x + (row * heads + head) * hd;
  Vec8* pa = reinterpret_cast<Vec8*>(p + j0);
  Vec8* pb = reinterpret_cast<Vec8*>(p + half + j0);
  Vec8 av = *pa, bv = *pb, ao, bo;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 a2 = __bfloat1622float2(av.h[k]), b2 = __bfloat1622float2(bv.h[k]);
    const float2 cs0 = cs[j0 + 2 * k], cs1 = cs[j0 + 2 * k + 1];
    ao.h[k] = __floats2bfloat162_rn(rotate_a(a2.x, b2.x, cs0.x, cs0.y), rotate_a(a2.y, b2.y, cs1.x, cs1.y));
    bo.h[k] = __floats2bfloat162_rn(rotate_b(a2.x, b2.x, cs0.x, cs0.y), rotate_b(a2.y, b2.y, cs1.x, cs1.y));
  }
  *pa = ao;
  *pb = bo;
}

// torch: act = silu(gate) rounded to bf16, then act * up rounded to bf16.
__global__ void swiglu_kernel(bf16* __restrict__ g, const bf16* __restrict__ u, int64_t n_vec) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_vec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Vec8 gv = reinterpret_cast<Vec8*>(g)[i], uv = reinterpret_cast<const Vec8*>(u)[i], out;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float2 a = __bfloat1622float2(gv.h[j]), b = __bfloat1622float2(uv.h[j]);
      float2 s = __bfloat1622float2(__floats2bfloat162_rn(silu(a.x), silu(a.y)));
      out.h[j] = __floats2bfloat162_rn(s.x * b.x, s.y * b.y);
    }
    reinterpret_cast<Vec8*>(g)[i] = out;
  }
}

__global__ void cfg_kernel(float* __restrict__ cond, const float* __restrict__ uncond, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    cond[i] = uncond[i] + (scale + 1.0f) * (cond[i] - uncond[i]);
}

void check_vec(int64_t n, const char* op) {
  CUDA_REQUIRE(n % kVec == 0, std::string("cuda ") + op + ": size " + std::to_string(n) +
                                  " is not a multiple of 8 (model widths must be)");
}

}  // namespace

unsigned grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 132 * 32 ? 132 * 32 : blocks));
}

void embed(const int32_t* ids, int64_t rows, const bf16* table, int64_t d, bf16* out, cudaStream_t s) {
  if (rows == 0) return;
  check_vec(d, "embed");
  gather_rows_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(ids, rows, table, d, out);
  CUDA_CHECK_LAUNCH();
}

void rms_norm(const bf16* x, int64_t rows, int64_t d, const bf16* w, float eps, bf16* y, cudaStream_t s) {
  if (rows == 0) return;
  check_vec(d, "rms_norm");
  const unsigned grid = static_cast<unsigned>(rows);
  const int64_t per_thread = (d / kVec + 255) / 256;
  if (per_thread <= 1) rms_norm_regs_kernel<1><<<grid, 256, 0, s>>>(x, d, w, eps, y);
  else if (per_thread <= 2) rms_norm_regs_kernel<2><<<grid, 256, 0, s>>>(x, d, w, eps, y);
  else if (per_thread <= 4) rms_norm_regs_kernel<4><<<grid, 256, 0, s>>>(x, d, w, eps, y);
  else if (per_thread <= 8) rms_norm_regs_kernel<8><<<grid, 256, 0, s>>>(x, d, w, eps, y);
  else rms_norm_two_pass_kernel<<<grid, 256, 0, s>>>(x, d, w, eps, y);
  CUDA_CHECK_LAUNCH();
}

void rms_norm_two_pass(const bf16* x, int64_t rows, int64_t d, const bf16* w, float eps, bf16* y, cudaStream_t s) {
  if (rows == 0) return;
  check_vec(d, "rms_norm");
  rms_norm_two_pass_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(x, d, w, eps, y);
  CUDA_CHECK_LAUNCH();
}

void rope(bf16* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq, const int32_t* positions,
          cudaStream_t s, int rot) {
  const int half = hd / 2;
  if (rows == 0 || heads == 0 || half == 0) return;
  if (rot > 0 && rot != hd) return rope_pairwise(x, rows, heads, hd, pos0, inv_freq, positions, s, rot);
  const int per_row = heads * (half / kVec);
  const int rows_per_block = std::max(1, 256 / std::max(1, per_row));
  // The 16-byte form needs whole vectors per head, a block per row, and its angles in the
  // default 48 KiB of shared memory; anything else takes the pairwise form.
  if (half % kVec != 0 || per_row > 1024 || sizeof(float2) * rows_per_block * half > 48 * 1024)
    return rope_pairwise(x, rows, heads, hd, pos0, inv_freq, positions, s);
  const dim3 block(static_cast<unsigned>(per_row), static_cast<unsigned>(rows_per_block));
  const unsigned grid = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
  const size_t smem = sizeof(float2) * static_cast<size_t>(rows_per_block) * half;
  rope_vec8_kernel<<<grid, block, smem, s>>>(x, rows, heads, hd, pos0, inv_freq, positions);
  CUDA_CHECK_LAUNCH();
}

void rope_pairwise(bf16* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq,
                   const int32_t* positions, cudaStream_t s, int rot) {
  if (rot <= 0) rot = hd;
  const int64_t total = rows * heads * (rot / 2);
  if (total == 0) return;
  rope_pairwise_kernel<<<grid_for(total, 256), 256, 0, s>>>(x, rows, heads, hd, rot, pos0, inv_freq, positions);
  CUDA_CHECK_LAUNCH();
}

void swiglu(bf16* g, const bf16* u, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  check_vec(n, "swiglu");
  swiglu_kernel<<<grid_for(n / kVec, 256), 256, 0, s>>>(g, u, n / kVec);
  CUDA_CHECK_LAUNCH();
}

void cfg_combine(float* cond, const float* uncond, int64_t n, float scale, cudaStream_t s) {
  if (n == 0) return;
  cfg_kernel<<<grid_for(n, 256), 256, 0, s>>>(cond, uncond, n, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mosaic::cuda
