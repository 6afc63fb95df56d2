#pragma once
// Every CUDA runtime and driver call is checked; a failure becomes a mosaic::Error naming
// the call, the error and where. Kept free of fmt so that nvcc-compiled files can use it
// (nvcc cannot evaluate fmt's compile-time format checks).
#include <cuda.h>
#include <cuda_runtime.h>

#include <string>

namespace mosaic::cuda_detail {
[[noreturn]] void fail_runtime(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void fail_driver(CUresult res, const char* expr, const char* file, int line);
[[noreturn]] void fail_message(const std::string& msg);
}  // namespace mosaic::cuda_detail

#define CUDA_CHECK(expr)                                                                       \
  do {                                                                                         \
    cudaError_t err_ = (expr);                                                                 \
    if (err_ != cudaSuccess) ::mosaic::cuda_detail::fail_runtime(err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CU_CHECK(expr)                                                                          \
  do {                                                                                          \
    CUresult res_ = (expr);                                                                     \
    if (res_ != CUDA_SUCCESS) ::mosaic::cuda_detail::fail_driver(res_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations at once.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// A precondition in nvcc-compiled code; `msg` is a std::string built by the caller.
#define CUDA_REQUIRE(cond, msg)                                    \
  do {                                                             \
    if (!(cond)) ::mosaic::cuda_detail::fail_message(msg);         \
  } while (0)
