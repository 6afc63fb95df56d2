#pragma once
// One generation's state: the tokens (the prompt, then the generated region, all masks at
// first), where the sampler stands in its blocks and steps, and the seed of its noise. A
// sampler reads and advances it; the engine loop runs steps until it is finished.
#include <cstdint>
#include <vector>

namespace mosaic {

struct Sequence {
  std::vector<int32_t> tokens;
  int64_t prompt_length = 0;
  int32_t mask_id = 0;
  uint64_t seed = 0;
  int64_t block = 0;        // the block being denoised
  int64_t step = 0;         // the step within it
  int64_t global_step = 0;  // steps taken so far: the noise counter
  bool finished = false;

  // prompt followed by `gen_length` masks. Errors name the flags.
  static Sequence start(const std::vector<int32_t>& prompt, int64_t gen_length, int32_t mask_id, uint64_t seed);

  int64_t length() const { return static_cast<int64_t>(tokens.size()); }
  int64_t gen_length() const { return length() - prompt_length; }
  // Positions in [begin, end) that still hold the mask, in order.
  std::vector<int32_t> masked_in(int64_t begin, int64_t end) const;
  // Moves to the next step; past the last step of a block to the next block; past the last
  // block the sequence is finished.
  void advance(int64_t steps_per_block, int64_t num_blocks);
  // The same, one move at a time: the next step of this block, or the next block's first
  // step (finished past the last block).
  void next_step();
  void next_block(int64_t num_blocks);
};

}  // namespace mosaic
