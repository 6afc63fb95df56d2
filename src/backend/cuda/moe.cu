// Mixture-of-experts pieces on the GPU: the weighted add of one expert's output rows into the
// residual rows they came from. (Routing and the per-expert GEMMs are in cuda_backend.cpp.)
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

#include <algorithm>

namespace mosaic::cuda {

namespace {

template <class T>
__device__ __forceinline__ float load(const T* p) {
  if constexpr (sizeof(T) == 2)
    return __bfloat162float(*p);
  else
    return *p;
}
template <class T>
__device__ __forceinline__ void store(T* p, float v) {
  if constexpr (sizeof(T) == 2)
    *p = __float2bfloat16(v);
  else
    *p = v;
}

// One block per row: out[idx[r]] += w[r] * y[r], in fp32, rounded once.
template <class T>
__global__ void scatter_add_kernel(const T* __restrict__ y, int64_t d, const int32_t* __restrict__ idx,
                                   const float* __restrict__ w, T* __restrict__ out) {
  const int64_t r = blockIdx.x;
  T* o = out + static_cast<int64_t>(idx[r]) * d;
  const T* yr = y + r * d;
  const float wr = w[r];
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) store(o + c, load(o + c) + wr * load(yr + c));
}

template <class T>
__global__ void add_f32_kernel(const float* __restrict__ y, int64_t n, T* __restrict__ x) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(x + i, load(x + i) + y[i]);
}

template <class T>
void launch_add(const float* y, int64_t n, T* x, cudaStream_t s) {
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535);
  add_f32_kernel<<<static_cast<unsigned>(blocks), 256, 0, s>>>(y, n, x);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void add_f32(const float* y, int64_t n, bf16* x, cudaStream_t s) { launch_add(y, n, x, s); }
void add_f32(const float* y, int64_t n, float* x, cudaStream_t s) { launch_add(y, n, x, s); }

void scatter_add_rows(const bf16* y, int64_t d, const int32_t* idx, const float* w, int64_t rows, bf16* out,
                      cudaStream_t s) {
  if (rows == 0) return;
  scatter_add_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(y, d, idx, w, out);
  CUDA_CHECK_LAUNCH();
}

void scatter_add_rows_f32(const float* y, int64_t d, const int32_t* idx, const float* w, int64_t rows, float* out,
                          cudaStream_t s) {
  if (rows == 0) return;
  scatter_add_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(y, d, idx, w, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mosaic::cuda
