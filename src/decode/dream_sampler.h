#pragma once
// Dream's official sampler (Dream-org generation_utils.py: _sample, sample_tokens), with the
// block-wise variant of Fast-dLLM and Sparse-dLLM. Per step of a block: t, s from
// linspace(1, eps, steps + 1) in float32; `origin` commits each masked position with
// probability 1 - s/t; the others commit the int(n (1 - s/t)) most confident masked tokens
// (all at the block's last step), confidence by alg: maskgit_plus (probability), topk_margin
// (top-1 minus top-2), entropy (negative entropy). Tokens and confidences come from logits
// shifted by one (models/dream.cpp), scaled by 1/temperature, top-p then top-k filtered.
//
// With a cache (Fast-dLLM generation_utils_block.py, Sparse-dLLM generation_utils.py) a
// block's first step only commits the block's first token: the later, cached steps run the
// block's rows alone, whose first position would need the row before it. The timestep
// schedule then runs from the block's second step. Threshold decoding ranks by probability
// (Fast-dLLM's confidence_threshold) and ends a block when it has no masks left.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "decode/engine.h"
#include "decode/sampler.h"
#include "models/kv_cache.h"
#include "sampling/sample_params.h"

namespace mosaic {

enum class DreamAlg { Origin, MaskgitPlus, TopkMargin, Entropy };

struct DreamOptions {
  int64_t gen_length = 128;
  int64_t steps = 128;
  int64_t block_length = 0;  // 0: the whole generation in one block (the official algorithm)
  DreamAlg alg = DreamAlg::Entropy;
  double temperature = 0.0;
  double top_p = 1.0;  // 1: off
  int64_t top_k = 0;   // 0: off
  double alg_temp = 0.0;  // > 0: choose the committed tokens by sampling softmax(confidence / alg_temp)
  double eps = 1e-3;
  uint64_t seed = 0;
  CacheOptions cache;
  double threshold = 0.0;  // > 0: threshold decoding instead of the timestep schedule
};

DreamAlg parse_dream_alg(const std::string& s);
std::string dream_alg_name(DreamAlg a);
// Errors name the CLI flags.
void validate_dream_options(const DreamOptions& o);

// torch.linspace(start, end, n) in float32, as torch computes it on CUDA (and on current CPUs):
// step = (end - start) / (n - 1) in float32, the first half fma(step, i, start), the second
// half fma(-step, n - 1 - i, end).
std::vector<float> linspace_f32(float start, float end, int64_t n);
// Dream's transfer count at a step that is not the block's last: int(n * (1 - s / t)) in float32.
int64_t dream_transfer_count(int64_t masked, float t, float s);

class DreamSampler final : public Sampler {
 public:
  explicit DreamSampler(const DreamOptions& o);
  int64_t num_blocks() const override { return o_.gen_length / block_length(); }
  int64_t steps_per_block() const override { return o_.steps / num_blocks(); }
  int64_t block_length() const override { return o_.block_length > 0 ? o_.block_length : o_.gen_length; }
  void prepare(const Sequence& s, StepRequest& r) override;
  int64_t commit(Sequence& s, const StepRequest& r, const StepOutputs& out) override;
  bool block_done(const Sequence& s) const override;

 private:
  int64_t block_begin(const Sequence& s) const { return s.prompt_length + s.block * block_length(); }
  // The block's first step of a cached generation: commits the block's first token only.
  bool first_token_step(const Sequence& s) const { return o_.cache.mode != CacheMode::None && s.step == 0; }
  DreamOptions o_;
  std::vector<float> timesteps_;  // linspace(1, eps, steps_per_block + 1)
  int64_t k_ = 0;                 // tokens the current step commits (confidence algorithms)
  bool threshold_step_ = false;   // the current step commits by threshold
};

GenerateResult dream_generate(Model& model, const std::vector<int32_t>& prompt, const DreamOptions& o,
                              const StepCallback& on_step = {});

}  // namespace mosaic
