#pragma once
// bf16 test data for the attention kernels: random host values with the floats they stand
// for (the CPU oracle's inputs), device buffers that can be poisoned, and a relative error
// that reports unwritten (NaN) output.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "core/dtype.h"

namespace mosaic::test {

struct HostBf16 {
  std::vector<uint16_t> bits;
  std::vector<float> f;  // the floats the bits represent
};

inline HostBf16 random_bf16(std::mt19937& rng, size_t n, float stddev) {
  std::normal_distribution<float> dist(0.f, stddev);
  HostBf16 h;
  h.bits.resize(n);
  h.f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    h.bits[i] = f32_to_bf16(dist(rng));
    h.f[i] = bf16_to_f32(h.bits[i]);
  }
  return h;
}

struct DevBuf {
  uint16_t* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * 2)); }
  explicit DevBuf(const std::vector<uint16_t>& h) : DevBuf(h.size()) {
    CUDA_CHECK(cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { cudaFree(p); }
  void poison() { CUDA_CHECK(cudaMemset(p, 0xFF, n * 2)); }  // 0xFFFF: a bf16 NaN
  std::vector<float> get() const {
    std::vector<uint16_t> h(n);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> f(n);
    for (size_t i = 0; i < n; ++i) f[i] = bf16_to_f32(h[i]);
    return f;
  }
  cuda::bf16* bf() const { return reinterpret_cast<cuda::bf16*>(p); }
};

// A device array of T filled from the host (or poisoned: 0xFF bytes, NaN for floats).
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
    CUDA_CHECK(cudaMemset(p, 0xFF, std::max<size_t>(count, 1) * sizeof(T)));
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// ||got - ref|| / ||ref||; infinite when any element of got is NaN/Inf (e.g. never written).
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace mosaic::test
