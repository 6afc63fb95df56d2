// The memory-bound ops: embedding and row gathers, SwiGLU, residual adds, guidance.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void embed(const int32_t* ids, int64_t rows, const float* table, int64_t d, float* out) {
#pragma omp parallel for
  for (int64_t i = 0; i < rows; ++i) std::memcpy(out + i * d, table + static_cast<int64_t>(ids[i]) * d, d * 4);
}

void gather_rows(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out) {
  embed(idx, rows, x, d, out);
}

void swiglu(float* g, const float* u, int64_t n) {
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void cfg_combine(float* cond, const float* uncond, int64_t n, float scale) {
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) cond[i] = uncond[i] + (scale + 1.0f) * (cond[i] - uncond[i]);
}

}  // namespace mosaic::cpu
