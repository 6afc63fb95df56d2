// Matrix products through OpenBLAS: c = a w^T (+ bias), w in PyTorch's [out, in] layout.
#include <cblas.h>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void matmul(const float* a, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* c) {
  if (rows == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(k), w, static_cast<int>(k), 0.0f, c,
              static_cast<int>(n));
  if (bias) {
#pragma omp parallel for
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += bias[j];
  }
}

}  // namespace mosaic::cpu
