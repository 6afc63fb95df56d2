// The sampler's per-row work on mask-only logits: the committed token and its confidence,
// in float64 like the references (LLaDA's gumbel noise and softmax upcast; Dream's fixtures
// run in float64 too).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "sampling/counter_noise.h"

namespace mosaic::cpu {

namespace {

double uniform(const SampleParams& p, uint64_t stream, int32_t pos, int64_t col) {
  return counter_uniform(p.seed, stream, p.step, static_cast<uint64_t>(pos), static_cast<uint64_t>(col));
}

// LLaDA generate.py: the token is argmax exp(l) / (-log u)^T, taken in the log domain
// (l - T log(-log u)): the same order without overflow; the CUDA kernel does the same.
void llada_row(const float* l, int64_t vocab, int32_t pos, const SampleParams& p, int32_t* token, float* conf) {
  int64_t best = 0;
  if (p.temperature == 0.0) {
    for (int64_t v = 1; v < vocab; ++v)
      if (l[v] > l[best]) best = v;  // first maximum, as torch.argmax
  } else {
    double best_score = -INFINITY;
    for (int64_t v = 0; v < vocab; ++v) {
      double score = static_cast<double>(l[v]) - p.temperature * std::log(-std::log(uniform(p, kGumbelStream, pos, v)));
      if (score > best_score) {
        best_score = score;
        best = v;
      }
    }
  }
  *token = static_cast<int32_t>(best);
  if (p.confidence == Confidence::Random) {
    *conf = static_cast<float>(uniform(p, kRemaskStream, pos, 0));
    return;
  }
  double mx = l[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(l[v]));
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(l[v]) - mx);
  *conf = static_cast<float>(std::exp(static_cast<double>(l[best]) - mx) / sum);
}

// Softmax of z in place, over the entries not filtered out (-inf).
void softmax(std::vector<double>& z) {
  const double mx = *std::max_element(z.begin(), z.end());
  double sum = 0;
  for (double& v : z) sum += (v = std::exp(v - mx));
  for (double& v : z) v /= sum;
}

// Dream generation_utils.py sample_tokens: scale by 1/T, top-p, top-k, softmax, then the
// token and the confidence of the chosen algorithm. Filtered logits become -inf (the
// official code writes finfo.min: the same zero probability).
// z, scratch and order are per-thread buffers, reused from row to row.
// LLaDA2.0 applies the same filters in the other order (top-k, then top-p): `top_k_first`.
void dream_row(const float* l, int64_t vocab, int32_t pos, const SampleParams& p, std::vector<double>& z,
               std::vector<double>& scratch, std::vector<int64_t>& order, int32_t* token, float* conf,
               bool top_k_first = false) {
  z.resize(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) z[v] = p.temperature > 0 ? l[v] / p.temperature : l[v];
  auto top_k = [&] {
    if (p.top_k <= 0 || p.top_k >= vocab) return;
    scratch = z;
    std::nth_element(scratch.begin(), scratch.begin() + (p.top_k - 1), scratch.end(), std::greater<>());
    const double kth = scratch[static_cast<size_t>(p.top_k - 1)];
    for (double& v : z)
      if (v < kth) v = -INFINITY;
  };
  if (top_k_first) top_k();
  if (p.top_p < 1.0) {
    // Keep the smallest prefix of the sorted row whose probability reaches top_p: a token is
    // removed when the mass before it already exceeds top_p (the official shift by one).
    order.resize(z.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[a] > z[b]; });
    scratch = z;
    softmax(scratch);
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      const bool remove = i > 0 && cum > p.top_p;
      cum += scratch[order[i]];
      if (remove) z[order[i]] = -INFINITY;
    }
  }
  if (!top_k_first) top_k();
  softmax(z);  // z now holds the probabilities
  int64_t best = 0;
  if (p.temperature == 0.0) {
    for (int64_t v = 1; v < vocab; ++v)
      if (z[v] > z[best]) best = v;
  } else {
    // torch's Categorical draw: argmax p / E with E ~ Exp(1), here E = -log u.
    double best_key = -1;
    for (int64_t v = 0; v < vocab; ++v) {
      const double key = z[v] / -std::log(uniform(p, kGumbelStream, pos, v));
      if (key > best_key) {
        best_key = key;
        best = v;
      }
    }
  }
  *token = static_cast<int32_t>(best);
  switch (p.confidence) {
    case Confidence::Probability:
    case Confidence::Random:
      *conf = static_cast<float>(z[best]);
      break;
    case Confidence::Margin: {
      double top1 = -1, top2 = -1;
      for (double v : z) {
        if (v > top1) {
          top2 = top1;
          top1 = v;
        } else if (v > top2) {
          top2 = v;
        }
      }
      *conf = static_cast<float>(top1 - std::max(top2, 0.0));
      break;
    }
    case Confidence::NegEntropy: {
      double s = 0;
      for (double v : z) s += v * std::log(v + 1e-10);
      *conf = static_cast<float>(s);
      break;
    }
  }
}

}  // namespace

void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                 int32_t* token, float* conf) {
#pragma omp parallel
  {
    std::vector<double> z, scratch;
    std::vector<int64_t> order;
#pragma omp for
    for (int64_t i = 0; i < rows; ++i) {
      // LLaDA2.0 at T = 0 is a plain argmax with the untempered softmax's confidence: LLaDA's rule.
      if (p.rule == TokenRule::Llada || (p.rule == TokenRule::Llada2 && p.temperature == 0.0))
        llada_row(logits + i * vocab, vocab, pos[i], p, token + i, conf + i);
      else
        dream_row(logits + i * vocab, vocab, pos[i], p, z, scratch, order, token + i, conf + i,
                  p.rule == TokenRule::Llada2);
    }
  }
}

void rank_rows(const float* conf, int64_t n, int32_t* order) {
  std::iota(order, order + n, 0);
  std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return conf[a] > conf[b]; });
}

}  // namespace mosaic::cpu
