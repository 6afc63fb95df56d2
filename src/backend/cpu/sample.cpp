// The sampler's per-row work on mask-only logits: the committed token and its confidence,
// in float64 like the reference (add_gumbel_noise and the softmax both upcast).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/kernels.h"
#include "decode/counter_noise.h"

namespace mosaic::cpu {

void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                 int32_t* token, float* conf) {
#pragma omp parallel for
  for (int64_t i = 0; i < rows; ++i) {
    const float* l = logits + i * vocab;
    int64_t best = 0;
    if (p.temperature == 0.0) {
      for (int64_t v = 1; v < vocab; ++v)
        if (l[v] > l[best]) best = v;  // first maximum, as torch.argmax
    } else {
      // The reference's gumbel-max, argmax exp(l) / (-log u)^T, taken in the log domain
      // (l - T log(-log u)): the same order without overflow; the CUDA kernel does the same.
      double best_score = -INFINITY;
      for (int64_t v = 0; v < vocab; ++v) {
        double u = counter_uniform(p.seed, kGumbelStream, p.step, static_cast<uint64_t>(pos[i]),
                                   static_cast<uint64_t>(v));
        double score = static_cast<double>(l[v]) - p.temperature * std::log(-std::log(u));
        if (score > best_score) {
          best_score = score;
          best = v;
        }
      }
    }
    token[i] = static_cast<int32_t>(best);
    if (p.remasking == Remasking::Random) {
      conf[i] = static_cast<float>(counter_uniform(p.seed, kRemaskStream, p.step, static_cast<uint64_t>(pos[i]), 0));
    } else {
      double mx = l[0];
      for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(l[v]));
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(l[v]) - mx);
      conf[i] = static_cast<float>(std::exp(static_cast<double>(l[best]) - mx) / sum);
    }
  }
}

void rank_rows(const float* conf, int64_t n, int32_t* order) {
  std::iota(order, order + n, 0);
  std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return conf[a] > conf[b]; });
}

}  // namespace mosaic::cpu
