#include "memory/cuda/driver_api.h"

#include <cuda_runtime.h>

#include "core/error.h"

namespace mosaic::driver {

namespace {

template <typename F>
void resolve(const char* name, F* fn) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult status;
  cudaError_t err = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &status);
  MOSAIC_CHECK(err == cudaSuccess && status == cudaDriverEntryPointSuccess && p != nullptr,
               "the CUDA driver does not provide {} ({}); a driver for CUDA 12 or newer is needed", name,
               cudaGetErrorString(err));
  *fn = reinterpret_cast<F>(p);
}

Api load() {
  Api a;
  resolve("cuMemGetAllocationGranularity", &a.mem_get_allocation_granularity);
  resolve("cuMemAddressReserve", &a.mem_address_reserve);
  resolve("cuMemAddressFree", &a.mem_address_free);
  resolve("cuMemCreate", &a.mem_create);
  resolve("cuMemRelease", &a.mem_release);
  resolve("cuMemMap", &a.mem_map);
  resolve("cuMemUnmap", &a.mem_unmap);
  resolve("cuMemSetAccess", &a.mem_set_access);
  resolve("cuGetErrorName", &a.get_error_name);
  return a;
}

}  // namespace

const Api& api() {
  static const Api a = load();
  return a;
}

}  // namespace mosaic::driver
