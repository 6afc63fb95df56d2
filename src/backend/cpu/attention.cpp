// Bidirectional attention, one query tile at a time so the scores never exceed
// tile x L floats: S = q k^T * scale (BLAS), row softmax, o = S v (BLAS).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void attention(const float* q, int64_t rows, const float* k, const float* v, int64_t kv_rows, int heads,
               int kv_heads, int hd, float scale, float* out, float* workspace) {
  const int64_t tile = kAttentionTile;
  const int group = heads / kv_heads;
  const int q_ld = heads * hd, kv_ld = kv_heads * hd;
  // Heads in parallel, each thread with its own tile of scores in the workspace.
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    float* s = workspace + static_cast<int64_t>(omp_get_thread_num()) * tile * kv_rows;
    const int kvh = h / group;
    const float* kh = k + static_cast<int64_t>(kvh) * hd;
    const float* vh = v + static_cast<int64_t>(kvh) * hd;
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
      const int64_t tr = std::min(tile, rows - r0);
      const float* qt = q + r0 * q_ld + static_cast<int64_t>(h) * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tr), static_cast<int>(kv_rows), hd,
                  scale, qt, q_ld, kh, kv_ld, 0.0f, s, static_cast<int>(kv_rows));
      for (int64_t i = 0; i < tr; ++i) {
        float* sr = s + i * kv_rows;
        float mx = -INFINITY;
        for (int64_t j = 0; j < kv_rows; ++j) mx = std::max(mx, sr[j]);
        double sum = 0;
        for (int64_t j = 0; j < kv_rows; ++j) {
          sr[j] = std::exp(sr[j] - mx);
          sum += sr[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < kv_rows; ++j) sr[j] *= inv;
      }
      float* ot = out + r0 * q_ld + static_cast<int64_t>(h) * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(tr), hd, static_cast<int>(kv_rows),
                  1.0f, s, static_cast<int>(kv_rows), vh, kv_ld, 0.0f, ot, q_ld);
    }
  }
}

}  // namespace mosaic::cpu
