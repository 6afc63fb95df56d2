#pragma once
// What the sampler asks of one step's head rows: how each row's token is drawn and how its
// confidence is measured. Backends compute it (backend/*/sample*), decoders choose it
// (decode/*_sampler): this header is the one place both depend on.
#include <cstdint>

namespace mosaic {

// The token rule of a family's official sampler.
enum class TokenRule : uint8_t {
  // LLaDA generate.py: argmax of exp(logits) / (-log u)^T (gumbel-max; plain argmax at T = 0);
  // the confidence's softmax sees the untempered logits.
  Llada,
  // Dream sample_tokens: logits / T, then top-p, then top-k filtering, softmax; the token is the
  // first maximum at T = 0, else torch's Categorical draw argmax p / (-log u); confidences come
  // from those filtered probabilities.
  Dream,
  // LLaDA2.0 generate(): at T = 0 the first maximum, its confidence from the untempered softmax;
  // else logits / T, then top-k, then top-p filtering, softmax, a Categorical draw (argmax p /
  // (-log u)); the confidence is the drawn token's filtered probability.
  Llada2,
};

// How a row's confidence is measured.
enum class Confidence : uint8_t {
  Probability,  // the chosen token's probability (LLaDA low_confidence, Dream maskgit_plus)
  Random,       // a counter uniform per position (LLaDA random remasking)
  Margin,       // top-1 minus top-2 probability (Dream topk_margin)
  NegEntropy,   // sum of p log(p + 1e-10) (Dream entropy)
};

struct SampleParams {
  TokenRule rule = TokenRule::Llada;
  Confidence confidence = Confidence::Probability;
  double temperature = 0.0;
  double top_p = 1.0;  // Dream, LLaDA2; 1 = off
  int64_t top_k = 0;   // Dream, LLaDA2; 0 = off
  uint64_t seed = 0;
  uint64_t step = 0;       // global step index: the noise counter
  float cfg_scale = 0.0f;  // CfgCombine
  // True when only a sort of the whole row can decide (top-p / top-k).
  bool filters() const { return rule != TokenRule::Llada && (top_p < 1.0 || top_k > 0); }
  // Whether rows sampled with these parameters and with `o` come out the same, row by row: the
  // same parameters, or greedy rows without random confidences (their seed and step draw no
  // noise). A batch samples such sequences' rows in one call.
  bool samples_like(const SampleParams& o) const {
    const bool same_rules = rule == o.rule && confidence == o.confidence && temperature == o.temperature &&
                            top_p == o.top_p && top_k == o.top_k && cfg_scale == o.cfg_scale;
    if (!same_rules) return false;
    if (seed == o.seed && step == o.step) return true;
    return temperature == 0.0 && confidence != Confidence::Random;
  }
};

}  // namespace mosaic
