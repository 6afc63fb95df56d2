#include "backend/cuda/cuda_check.h"

#include "core/error.h"
#include "memory/cuda/driver_api.h"

namespace mosaic::cuda_detail {

void fail_runtime(cudaError_t err, const char* expr, const char* file, int line) {
  MOSAIC_FAIL("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err), expr, file, line);
}

void fail_driver(CUresult res, const char* expr, const char* file, int line) {
  const char* name = nullptr;
  try {
    driver::api().get_error_name(res, &name);
  } catch (const Error&) {
  }
  MOSAIC_FAIL("CUDA driver error {} in {} at {}:{}", name ? name : "?", expr, file, line);
}

void fail_message(const std::string& msg) { throw Error(msg); }

}  // namespace mosaic::cuda_detail
