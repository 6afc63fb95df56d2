#pragma once
// A sampler is one family's official generate() as a sequence of steps: for each step it
// says which rows need logits and how to sample them (a StepRequest), then commits what the
// step returned. decode/engine.h runs the loop; batching several sequences and cached
// decoding plug in at this seam.
#include <cstdint>

#include "decode/sequence.h"
#include "models/model.h"

namespace mosaic {

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual int64_t num_blocks() const = 0;
  virtual int64_t steps_per_block() const = 0;
  // Positions per block (its memory plan's block rows).
  virtual int64_t block_length() const = 0;
  // Fills the request for the sequence's current step: the head positions (none: nothing to
  // commit, the engine skips the model), sampling parameters, guidance.
  virtual void prepare(const Sequence& s, StepRequest& r) = 0;
  // Writes the step's committed tokens into the sequence and returns how many; does not
  // advance it (the engine does).
  virtual int64_t commit(Sequence& s, const StepRequest& r, const StepOutputs& out) = 0;
  // After a commit: whether the block is finished. By default after its scheduled steps;
  // threshold decoding ends a block when it has no masks left.
  virtual bool block_done(const Sequence& s) const { return s.step + 1 >= steps_per_block(); }
  // Whether a cache this sampler's steps read outlives a block (LLaDA2.0's exact prefix cache
  // keeps the rows of earlier blocks). Otherwise every block's first step stores its caches
  // afresh, so a server may run other sequences between two blocks of this one.
  virtual bool cache_spans_blocks() const { return false; }
  // The sequence it denoises: the prompt and the generated region (LLaDA2.0 pads the region to
  // whole blocks counted from position 0).
  virtual int64_t sequence_length(int64_t prompt_length, int64_t gen_length) const {
    return prompt_length + gen_length;
  }
};

}  // namespace mosaic
