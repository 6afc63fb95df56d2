#include "memory/cuda/vmm_region.h"

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "memory/cuda/driver_api.h"
#include "plan/offsets.h"

namespace mosaic {

namespace {
CUmemAllocationProp device_prop(int device) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}
}  // namespace

VmmRegion::VmmRegion(int device, size_t reserve_bytes, const char* what) : device_(device), what_(what) {
  CUmemAllocationProp prop = device_prop(device);
  CU_CHECK(driver::api().mem_get_allocation_granularity(&gran_, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  reserved_ = align_up(reserve_bytes, gran_);
  CU_CHECK(driver::api().mem_address_reserve(&base_, reserved_, gran_, 0, 0));
}

VmmRegion::~VmmRegion() {
  try {
    resize(0);
  } catch (...) {
  }
  if (base_) driver::api().mem_address_free(base_, reserved_);
}

void VmmRegion::resize(size_t bytes, size_t slack) {
  const size_t want = align_up(bytes, gran_);
  MOSAIC_CHECK(want <= reserved_, "{}: {:.2f} GiB requested, past the {:.2f} GiB address range reserved for it",
               what_, want / 1073741824.0, reserved_ / 1073741824.0);
  if (want > mapped_) {
    const size_t size = want - mapped_;
    CUmemAllocationProp prop = device_prop(device_);
    CUmemGenericAllocationHandle h;
    CUresult r = driver::api().mem_create(&h, size, &prop, 0);
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
      MOSAIC_FAIL("{}: the device has no room for {:.2f} GiB more ({:.2f} GiB mapped already); lower "
                  "--memory-budget so the planner chunks more, or shorten the sequence",
                  what_, size / 1073741824.0, mapped_ / 1073741824.0);
    CU_CHECK(r);
    CUdeviceptr at = base_ + mapped_;
    CUresult m = driver::api().mem_map(at, size, 0, h, 0);
    if (m != CUDA_SUCCESS) {
      driver::api().mem_release(h);
      CU_CHECK(m);
    }
    CUmemAccessDesc access = {};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = device_;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CU_CHECK(driver::api().mem_set_access(at, size, &access, 1));
    pieces_.push_back({h, size});
    mapped_ = want;
    return;
  }
  // Shrink piece by piece from the top while the rest still covers `want`. Work in flight
  // may still touch those pages: wait for the device first.
  if (!pieces_.empty() && mapped_ - pieces_.back().size >= want && mapped_ > want + slack)
    CUDA_CHECK(cudaDeviceSynchronize());
  while (!pieces_.empty() && mapped_ - pieces_.back().size >= want && mapped_ > want + slack) {
    const Piece p = pieces_.back();
    CUdeviceptr at = base_ + mapped_ - p.size;
    CU_CHECK(driver::api().mem_unmap(at, p.size));
    CU_CHECK(driver::api().mem_release(p.handle));
    pieces_.pop_back();
    mapped_ -= p.size;
  }
}

}  // namespace mosaic
