#pragma once
// The LLaDA pre-training objective as an evaluation: mask each token of a window with
// probability t, score the masked positions, weight by 1/t. Masks and t come from the
// counter noise (stream kEvalStream), so tools/reference/eval_loss.py computes the very
// same estimate and the two must agree.
#include <cstdint>
#include <optional>
#include <vector>

#include "models/model.h"

namespace mosaic {

constexpr uint64_t kEvalStream = 3;

struct LossOptions {
  int64_t seq_len = 256;  // tokens per window (the first is BOS when the model has one)
  int64_t t_draws = 8;    // masking levels per window: t = (j + 0.5) / t_draws
  int64_t max_windows = 0;  // 0 = all
  uint64_t seed = 0;
};

struct LossResult {
  int64_t windows = 0, masked = 0, correct = 0;
  double loss = 0;      // mean over windows and draws of sum(CE)/t / seq_len (LLaDA's ELBO term)
  double masked_ce = 0; // plain mean cross-entropy over masked tokens
  double accuracy() const { return masked ? static_cast<double>(correct) / masked : 0.0; }
};

// `tokens` is the tokenized held-out text; windows are consecutive, non-overlapping.
LossResult diffusion_loss(Model& m, const std::vector<int32_t>& tokens, const LossOptions& o,
                          std::optional<int32_t> bos);

}  // namespace mosaic
