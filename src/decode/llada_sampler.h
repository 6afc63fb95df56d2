#pragma once
// LLaDA's official sampler (ML-GSAI/LLaDA generate.py): semi-autoregressive blocks, a fixed
// number of tokens committed per step, chosen by confidence (low_confidence) or at random,
// optional gumbel-max temperature and classifier-free guidance. Same tokens as the reference.
// With Fast-dLLM's caches and threshold decoding (generate_with_prefix_cache,
// generate_with_dual_cache, get_transfer_index) and Sparse-dLLM's sparse cache.
#include <cstdint>
#include <string>
#include <vector>

#include "decode/engine.h"
#include "decode/sampler.h"
#include "models/kv_cache.h"
#include "sampling/sample_params.h"

namespace mosaic {

struct GenerateOptions {
  int64_t gen_length = 128;
  int64_t steps = 128;
  int64_t block_length = 128;
  double temperature = 0.0;
  float cfg_scale = 0.0f;
  Confidence remasking = Confidence::Probability;  // low_confidence; Random: random remasking
  uint64_t seed = 0;
  CacheOptions cache;      // Fast-dLLM's prefix / dual cache, Sparse-dLLM's sparse cache
  double threshold = 0.0;  // > 0: Fast-dLLM's threshold decoding instead of the schedule
};

// Checks the options against the schedule's rules; the messages name the CLI flags.
void validate_generate_options(const GenerateOptions& o);
// LLaDA's default block length that fits `gen_length`: its largest divisor up to 32 (the
// official block length).
int64_t fitting_block_length(int64_t gen_length);
// "low_confidence" | "random"
Confidence parse_remasking(const std::string& s);

class LladaSampler final : public Sampler {
 public:
  explicit LladaSampler(const GenerateOptions& o);
  int64_t num_blocks() const override { return o_.gen_length / o_.block_length; }
  int64_t steps_per_block() const override { return o_.steps / num_blocks(); }
  int64_t block_length() const override { return o_.block_length; }
  void prepare(const Sequence& s, StepRequest& r) override;
  int64_t commit(Sequence& s, const StepRequest& r, const StepOutputs& out) override;
  bool block_done(const Sequence& s) const override;

 private:
  int64_t block_begin(const Sequence& s) const { return s.prompt_length + s.block * o_.block_length; }
  int64_t block_end(const Sequence& s) const { return block_begin(s) + o_.block_length; }
  GenerateOptions o_;
  std::vector<int64_t> schedule_;  // tokens per step of the current block
  std::vector<bool> prompt_index_;  // guidance: the prompt positions that held tokens at the start
  std::vector<int32_t> uncond_;     // guidance: the sequence with those positions masked
};

// Sequence + LladaSampler + the engine loop.
GenerateResult llada_generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const StepCallback& on_step = {});

}  // namespace mosaic
