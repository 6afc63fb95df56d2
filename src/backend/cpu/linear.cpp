// Matrix products through OpenBLAS: c = a w^T (+ bias), w in PyTorch's [out, in] layout.
// OpenMP splits the output columns and each thread runs a single-threaded sgemm: one thread
// pool for the whole backend (OpenBLAS's own threads spinning beside OpenMP's cost 4x on
// two cores).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void matmul(const float* a, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* c,
            bool accumulate) {
  if (rows == 0 || n == 0) return;
  const int threads = omp_get_max_threads();
  // Column blocks of at least 64 outputs, a multiple of 16 for the SIMD kernels.
  const int64_t block = std::max<int64_t>(64, ((n + threads - 1) / threads + 15) / 16 * 16);
  const int64_t blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * block, nb = std::min(block, n - j0);
    // Accumulating: the product goes to scratch first, so that c gets exactly what a
    // product followed by a separate add would give (sgemm's beta = 1 would add c in the
    // middle of its k blocking).
    std::vector<float> scratch(accumulate ? static_cast<size_t>(rows * nb) : 0);
    float* dst = accumulate ? scratch.data() : c + j0;
    const int64_t ld = accumulate ? nb : n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(nb),
                static_cast<int>(k), 1.0f, a, static_cast<int>(k), w + j0 * k, static_cast<int>(k), 0.0f, dst,
                static_cast<int>(ld));
    if (bias)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < nb; ++j) dst[i * ld + j] += bias[j0 + j];
    if (accumulate)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < nb; ++j) c[i * n + j0 + j] += dst[i * ld + j];
  }
}

}  // namespace mosaic::cpu
