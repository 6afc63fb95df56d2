#pragma once
// The sum of one value per thread over a block (blockDim.x a multiple of 32, at most 1024),
// returned to every thread: warp shuffles, then one warp over the warps' sums. The order of
// additions is fixed by the block shape, so a kernel's result does not vary from run to run.
namespace mosaic::cuda {

template <typename T>
__device__ inline T block_sum(T v) {
  __shared__ T warp_sums[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    T s = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : T(0);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) warp_sums[0] = s;
  }
  __syncthreads();
  const T total = warp_sums[0];
  __syncthreads();  // a second call's warp 0 must not overwrite the sum before all have read it
  return total;
}

}  // namespace mosaic::cuda
