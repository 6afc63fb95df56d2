#pragma once
// Matrix products through cuBLASLt with fp32 accumulation: c[rows, n] = a[rows, k] w[n, k]^T
// (+ bias[n], fused as the epilogue). bf16 inputs, or all-fp32 (no TF32) for the verification
// mode. One descriptor set and heuristic answer per shape, cached.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace mosaic::cuda {

class LtMatmul {
 public:
  // f32: a, w, bias and c are all fp32 and the product is computed in full fp32.
  LtMatmul(cudaStream_t stream, void* workspace, size_t workspace_bytes, bool f32 = false);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // a, w, bias: bf16. c: bf16 when out_f32 is false, else fp32. accumulate: c += the
  // product (beta = 1, in the epilogue: the residual add costs no extra pass over c).
  void run(const void* a, int64_t rows, int64_t k, const void* w, const void* bias, int64_t n, void* c, bool out_f32,
           bool accumulate = false);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t lw = nullptr, la = nullptr, lc = nullptr;
    cublasLtMatmulAlgo_t algo;
  };
  Plan& plan(int64_t rows, int64_t k, int64_t n, bool bias, bool out_f32);

  cudaStream_t stream_;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  bool f32_;
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool>, Plan> plans_;
};

}  // namespace mosaic::cuda
