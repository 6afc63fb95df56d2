// Matrix products through OpenBLAS: c = a w^T (+ bias), w in PyTorch's [out, in] layout.
// OpenMP splits the output columns and each thread runs a single-threaded sgemm: one thread
// pool for the whole backend (OpenBLAS's own threads spinning beside OpenMP's cost 4x on
// two cores).
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void matmul(const float* a, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* c) {
  if (rows == 0 || n == 0) return;
  const int threads = omp_get_max_threads();
  // Column blocks of at least 64 outputs, a multiple of 16 for the SIMD kernels.
  const int64_t block = std::max<int64_t>(64, ((n + threads - 1) / threads + 15) / 16 * 16);
  const int64_t blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * block, nb = std::min(block, n - j0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(nb),
                static_cast<int>(k), 1.0f, a, static_cast<int>(k), w + j0 * k, static_cast<int>(k), 0.0f, c + j0,
                static_cast<int>(n));
    if (bias)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = j0; j < j0 + nb; ++j) c[i * n + j] += bias[j];
  }
}

}  // namespace mosaic::cpu
