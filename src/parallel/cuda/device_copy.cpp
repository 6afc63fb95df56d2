#include "parallel/cuda/device_copy.h"

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"

namespace mosaic::parallel {

void device_copy(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  CUDA_CHECK(cudaDeviceSynchronize());  // a device-to-device cudaMemcpy may return before the bytes land
}

}  // namespace mosaic::parallel
