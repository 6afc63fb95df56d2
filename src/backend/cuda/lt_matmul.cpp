#include "backend/cuda/lt_matmul.h"

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

#define LT_CHECK(expr)                                                                          \
  do {                                                                                          \
    cublasStatus_t st_ = (expr);                                                                \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                           \
      MOSAIC_FAIL("cuBLASLt error {} in {} at {}:{}", static_cast<int>(st_), #expr, __FILE__, __LINE__); \
  } while (0)

namespace mosaic::cuda {

LtMatmul::LtMatmul(cudaStream_t stream, void* workspace, size_t workspace_bytes, bool f32)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes), f32_(f32) {
  LT_CHECK(cublasLtCreate(&lt_));
}

LtMatmul::~LtMatmul() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.lw);
    cublasLtMatrixLayoutDestroy(p.la);
    cublasLtMatrixLayoutDestroy(p.lc);
    cublasLtMatmulDescDestroy(p.desc);
  }
  if (lt_) cublasLtDestroy(lt_);
}

LtMatmul::Plan& LtMatmul::plan(int64_t rows, int64_t k, int64_t n, bool bias, bool out_f32) {
  auto key = std::make_tuple(rows, k, n, bias, out_f32);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  // Column-major view of the row-major product: c^T[n, rows] = w[n, k] (stored as k x n, op T)
  // times a^T[k, rows] (stored as k x rows, op N).
  Plan p;
  LT_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bt = f32_ ? CUDA_R_32F : CUDA_R_16BF;
    LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  const cudaDataType_t ct = out_f32 || f32_ ? CUDA_R_32F : CUDA_R_16BF;
  const cudaDataType_t in = f32_ ? CUDA_R_32F : CUDA_R_16BF;
  LT_CHECK(cublasLtMatrixLayoutCreate(&p.lw, in, k, n, k));
  LT_CHECK(cublasLtMatrixLayoutCreate(&p.la, in, k, rows, k));
  LT_CHECK(cublasLtMatrixLayoutCreate(&p.lc, ct, n, rows, n));

  cublasLtMatmulPreference_t pref;
  LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                                sizeof(workspace_bytes_)));
  cublasLtMatmulHeuristicResult_t res[1];
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.lw, p.la, p.lc, p.lc, pref, 1, res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  LT_CHECK(st);
  MOSAIC_CHECK(found > 0, "cuBLASLt has no algorithm for a {}x{}x{} {} product", rows, n, k, f32_ ? "fp32" : "bf16");
  p.algo = res[0].algo;
  return plans_.emplace(key, p).first->second;
}

void LtMatmul::run(const void* a, int64_t rows, int64_t k, const void* w, const void* bias, int64_t n, void* c,
                   bool out_f32, bool accumulate) {
  if (rows == 0 || n == 0) return;
  // cuBLASLt's bias epilogue takes the output's type; the models only add biases to bf16
  // projections (Dream's q/k/v), never to the fp32 LM head.
  MOSAIC_CHECK(!(bias && out_f32 && !f32_), "cuBLASLt matmul: a bias with fp32 output is not supported");
  Plan& p = plan(rows, k, n, bias != nullptr, out_f32);
  if (bias)
    LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  LT_CHECK(cublasLtMatmul(lt_, p.desc, &alpha, w, p.lw, a, p.la, &beta, c, p.lc, c, p.lc, &p.algo, workspace_,
                          workspace_bytes_, stream_));
}

}  // namespace mosaic::cuda
