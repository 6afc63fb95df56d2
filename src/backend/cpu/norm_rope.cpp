// RMSNorm and rotary embeddings, computed the way LLaDA's and Qwen2's PyTorch code does.
#include <cmath>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void rms_norm(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y) {
#pragma omp parallel for
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = x + i * d;
    float* yr = y + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
    for (int64_t j = 0; j < d; ++j) yr[j] = w[j] * (xr[j] * inv);
  }
}

void rope(float* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq, const int32_t* positions,
          int rot) {
  const int half = (rot > 0 ? rot : hd) / 2;
#pragma omp parallel for
  for (int64_t i = 0; i < rows; ++i) {
    // torch forms the angle as float32(position) * float32(inv_freq), then sin/cos.
    const float p = static_cast<float>(positions ? positions[i] : pos0 + i);
    float* row = x + i * static_cast<int64_t>(heads) * hd;
    for (int j = 0; j < half; ++j) {
      const float ang = p * inv_freq[j];
      const float c = std::cos(ang), s = std::sin(ang);
      for (int h = 0; h < heads; ++h) {
        float* xh = row + static_cast<int64_t>(h) * hd;
        const float a = xh[j], b = xh[j + half];
        xh[j] = a * c - b * s;
        xh[j + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace mosaic::cpu
