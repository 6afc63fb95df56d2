// Attention, one query tile at a time so the scores never exceed tile x L floats: S = q k^T *
// scale (BLAS), row softmax, o = S v (BLAS). The keys may come from two places (kv, then more):
// each fills its own columns of the tile's scores. Bidirectional, or block-causal (the scores
// of unseen keys -inf before the softmax, as the reference's additive mask).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"

namespace mosaic::cpu {

void attention(const float* q, int64_t rows, KvRows kv, KvRows more, int heads, int kv_heads, int hd, float scale,
               float* out, float* workspace, const AttentionMask& mask) {
  const int64_t tile = kAttentionTile;
  const int group = heads / kv_heads;
  const int q_ld = heads * hd, kv_ld = kv_heads * hd;
  const int64_t n = kv.rows + more.rows;
  const KvRows parts[2] = {kv, more};
  if (n == 0) {  // softmax over no keys: define the output as zeros
    std::fill(out, out + rows * q_ld, 0.0f);
    return;
  }
  // Heads in parallel, each thread with its own tile of scores in the workspace.
#pragma omp parallel for schedule(dynamic)
  for (int h = 0; h < heads; ++h) {
    float* s = workspace + static_cast<int64_t>(omp_get_thread_num()) * tile * n;
    const int64_t head_off = static_cast<int64_t>(h / group) * hd;
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
      const int64_t tr = std::min(tile, rows - r0);
      const float* qt = q + r0 * q_ld + static_cast<int64_t>(h) * hd;
      // Block-causal: keys past every query's visible range are never read (an exact cache's
      // rows past the block may not be written yet).
      auto visible = [&](int64_t i) {
        if (mask.block <= 0) return n;
        const int64_t p = mask.positions ? mask.positions[r0 + i] : mask.pos0 + r0 + i;
        return std::min(n, (p / mask.block + 1) * mask.block);
      };
      int64_t seen = 0;
      for (int64_t i = 0; i < tr; ++i) seen = std::max(seen, visible(i));
      int64_t col = 0;
      for (const KvRows& p : parts) {
        const int64_t used = std::clamp<int64_t>(seen - col, 0, p.rows);
        if (used > 0)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tr), static_cast<int>(used), hd,
                      scale, qt, q_ld, static_cast<const float*>(p.k) + head_off, kv_ld, 0.0f, s + col,
                      static_cast<int>(n));
        col += p.rows;
      }
      for (int64_t i = 0; i < tr; ++i) {
        float* sr = s + i * n;
        const int64_t vis = visible(i);
        for (int64_t j = vis; j < seen; ++j) sr[j] = -INFINITY;  // past the end of the query's block
        float mx = -INFINITY;
        for (int64_t j = 0; j < seen; ++j) mx = std::max(mx, sr[j]);
        double sum = 0;
        for (int64_t j = 0; j < seen; ++j) {
          sr[j] = std::exp(sr[j] - mx);
          sum += sr[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < seen; ++j) sr[j] *= inv;
      }
      float* ot = out + r0 * q_ld + static_cast<int64_t>(h) * hd;
      col = 0;
      float beta = 0.0f;
      for (const KvRows& p : parts) {
        const int64_t used = std::clamp<int64_t>(seen - col, 0, p.rows);
        if (used > 0) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(tr), hd, static_cast<int>(used),
                      1.0f, s + col, static_cast<int>(n), static_cast<const float*>(p.v) + head_off, kv_ld, beta, ot,
                      q_ld);
          beta = 1.0f;
        }
        col += p.rows;
      }
    }
  }
}

}  // namespace mosaic::cpu
