#pragma once
// LLaDA2.0's official generate() (inclusionAI LLaDA2.0 modeling_llada2_moe.py): the sequence
// padded to whole blocks counted from position 0, so the prompt's last block is denoised too;
// block-causal attention over the window up to the current block's end; `steps` steps per
// block, each committing the block's masked tokens whose confidence exceeds `threshold` when
// there are at least the scheduled number of them, else the scheduled number by confidence;
// temperature with top-k then top-p; a finished block holding an eos ends the generation.
// Temperature 0 is a plain argmax (the official code samples even then; docs/notes/moe_models.md).
// With the prefix cache (exact here: with block-causal attention finished blocks' keys and values
// never change) each step runs only the rows not yet cached: the block, plus at a block's first
// step the block before it (its last commits came after it was last run) or the whole prompt.
#include <cstdint>
#include <vector>

#include "decode/engine.h"
#include "decode/sampler.h"
#include "models/kv_cache.h"

namespace mosaic {

struct Llada2Options {
  int64_t gen_length = 128;
  int64_t block_length = 32;
  int64_t steps = 32;  // per block (capped at gen_length / minimal_topk, as the official code does)
  double threshold = 0.95;
  double temperature = 0.0;
  int64_t top_k = 0;    // 0: off
  double top_p = 1.0;   // 1: off
  int64_t minimal_topk = 1;
  bool eos_early_stop = false;
  uint64_t seed = 0;
  CacheMode cache = CacheMode::None;  // None or Prefix
};

// Checks the options; the messages name the CLI flags.
void validate_llada2_options(const Llada2Options& o);

class Llada2Sampler final : public Sampler {
 public:
  Llada2Sampler(const Llada2Options& o, int64_t prompt_length, int32_t eos_id);
  // The prompt and the generation rounded up to whole blocks (this sampler's own prompt length).
  int64_t sequence_length(int64_t, int64_t) const override { return (first_block_ + num_blocks()) * o_.block_length; }
  int64_t num_blocks() const override;
  int64_t steps_per_block() const override { return steps_; }
  int64_t block_length() const override { return o_.block_length; }
  void prepare(const Sequence& s, StepRequest& r) override;
  int64_t commit(Sequence& s, const StepRequest& r, const StepOutputs& out) override;
  bool block_done(const Sequence& s) const override;
  bool cache_spans_blocks() const override { return o_.cache == CacheMode::Prefix; }

 private:
  int64_t block_begin(const Sequence& s) const { return (first_block_ + s.block) * o_.block_length; }
  int64_t block_end(const Sequence& s) const { return block_begin(s) + o_.block_length; }
  Llada2Options o_;
  int64_t prompt_length_, first_block_, steps_;
  int32_t eos_;
  std::vector<int64_t> schedule_;  // tokens per step, from the block length
  std::vector<int32_t> window_;    // the tokens up to the current block's end
  int64_t forwards_ = 0;           // the noise counter: forwards so far
  int64_t cached_ = 0;             // the prefix cache holds rows [0, cached_)
};

// The generated tokens generate() returns: the gen_length after the prompt, cut after the first eos.
std::vector<int32_t> llada2_answer(const std::vector<int32_t>& tokens, int64_t prompt_length, int64_t gen_length,
                                   int32_t eos_id);

// Sequence + Llada2Sampler + the engine loop. GenerateResult::tokens is the whole padded sequence.
GenerateResult llada2_generate(Model& model, const std::vector<int32_t>& prompt, const Llada2Options& o,
                               const StepCallback& on_step = {});

}  // namespace mosaic
