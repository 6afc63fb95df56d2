#pragma once
// The few driver-API calls the VMM arena needs, resolved through the runtime at first use
// instead of linking libcuda: a binary built with CUDA then still starts (and runs its CPU
// paths and tests) on machines without a GPU driver, such as CI.
#include <cuda.h>

namespace mosaic::driver {

struct Api {
  decltype(&cuMemGetAllocationGranularity) mem_get_allocation_granularity;
  decltype(&cuMemAddressReserve) mem_address_reserve;
  decltype(&cuMemAddressFree) mem_address_free;
  decltype(&cuMemCreate) mem_create;
  decltype(&cuMemRelease) mem_release;
  decltype(&cuMemMap) mem_map;
  decltype(&cuMemUnmap) mem_unmap;
  decltype(&cuMemSetAccess) mem_set_access;
  decltype(&cuGetErrorName) get_error_name;
};

// Throws mosaic::Error when the driver lacks one of them.
const Api& api();

}  // namespace mosaic::driver
