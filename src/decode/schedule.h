#pragma once
// LLaDA's schedule: how many tokens each step of a block commits (get_num_transfer_tokens).
#include <cstdint>
#include <vector>

namespace mosaic {

// The block rules both official samplers share: gen_length a multiple of block_length, steps a
// multiple of the number of blocks. Messages name the CLI flags.
void check_block_schedule(int64_t gen_length, int64_t block_length, int64_t steps);

// `masked` tokens over `steps` steps: masked/steps each, the remainder one extra to the
// earliest steps.
std::vector<int64_t> transfer_schedule(int64_t masked, int64_t steps);

// Indices of the k largest confidences; equal confidences go to the lower index (the
// reference's documented tie rule; torch.topk leaves it unspecified).
std::vector<int64_t> top_k_indices(const std::vector<float>& conf, int64_t k);

}  // namespace mosaic
