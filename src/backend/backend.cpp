#include "backend/backend.h"

#include <omp.h>

#include <cmath>

#include "backend/cpu/kernels.h"

#include "core/error.h"

namespace mosaic {

BackendTraits cpu_traits() {
  return {"cpu", 4, cpu::kAttentionTile * omp_get_max_threads()};
}
BackendTraits cuda_traits() { return {"cuda", 2, 0}; }
BackendTraits cuda_fp32_traits() { return {"cuda-fp32", 4, 0}; }

BackendTraits traits_of(const std::string& backend) {
  if (backend == "cpu") return cpu_traits();
  if (backend == "cuda") return cuda_traits();
  if (backend == "cuda-fp32") return cuda_fp32_traits();
  MOSAIC_FAIL("unknown backend '{}': use --backend cpu, cuda or cuda-fp32", backend);
}

std::vector<float> rope_inv_freq(double theta, int hd) {
  // torch: 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd)), all float32.
  std::vector<float> f(hd / 2);
  const float base = static_cast<float>(theta);
  for (int j = 0; j < hd / 2; ++j) {
    float expo = static_cast<float>(2 * j) / static_cast<float>(hd);
    f[j] = 1.0f / std::pow(base, expo);
  }
  return f;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int device) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend(device);
  if (name == "cuda-fp32") return make_cuda_backend(device, true);
  MOSAIC_FAIL("unknown backend '{}': use --backend cpu, cuda or cuda-fp32", name);
}

#ifndef MOSAIC_CUDA
std::unique_ptr<Backend> make_cuda_backend(int, bool) {
  MOSAIC_FAIL("this mosaic was built without CUDA: rebuild with -DMOSAIC_CUDA=ON, or use --backend cpu");
}
int cuda_device_count() { return 0; }
#endif

}  // namespace mosaic
