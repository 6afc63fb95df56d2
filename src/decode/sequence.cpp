#include "decode/sequence.h"

#include <algorithm>

#include "core/error.h"

namespace mosaic {

Sequence Sequence::start(const std::vector<int32_t>& prompt, int64_t gen_length, int32_t mask_id, uint64_t seed) {
  MOSAIC_CHECK(gen_length > 0, "--gen-length must be positive (got {})", gen_length);
  const int64_t L = static_cast<int64_t>(prompt.size()) + gen_length;
  MOSAIC_CHECK(L <= (int64_t{1} << 31) - 1, "prompt + --gen-length = {} tokens is past the 2^31 position limit", L);
  Sequence s;
  s.tokens.assign(static_cast<size_t>(L), mask_id);
  std::copy(prompt.begin(), prompt.end(), s.tokens.begin());
  s.prompt_length = static_cast<int64_t>(prompt.size());
  s.mask_id = mask_id;
  s.seed = seed;
  return s;
}

std::vector<int32_t> Sequence::masked_in(int64_t begin, int64_t end) const {
  std::vector<int32_t> pos;
  for (int64_t i = std::max<int64_t>(begin, 0); i < std::min(end, length()); ++i)
    if (tokens[i] == mask_id) pos.push_back(static_cast<int32_t>(i));
  return pos;
}

void Sequence::advance(int64_t steps_per_block, int64_t num_blocks) {
  if (step + 1 < steps_per_block)
    next_step();
  else
    next_block(num_blocks);
}

void Sequence::next_step() {
  ++global_step;
  ++step;
}

void Sequence::next_block(int64_t num_blocks) {
  ++global_step;
  step = 0;
  if (++block >= num_blocks) finished = true;
}

}  // namespace mosaic
