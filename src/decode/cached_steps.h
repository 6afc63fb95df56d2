#pragma once
// The decoding-side half of cached decoding, shared by the samplers: which kind of step the
// i-th step of a block is (Fast-dLLM: the first step stores the cache, the rest read it;
// Sparse-dLLM: the first two run the whole sequence, the second selects the cache), and
// Fast-dLLM's confidence-threshold parallel decoding.
#include <cstdint>
#include <vector>

#include "models/model.h"

namespace mosaic {

// The cache request of step `step` of the block [begin, end) of a `length`-token sequence.
CacheRequest cache_step(const CacheOptions& o, int64_t step, int64_t begin, int64_t end, int64_t length);

// Threshold decoding (Fast-dLLM get_transfer_index): of the rows ranked by confidence, the
// first, plus every other whose confidence is >= threshold. Returns how many of the ranked
// rows that is (they are a prefix of the ranking).
int64_t threshold_count(const std::vector<int32_t>& order, const std::vector<float>& conf, double threshold);

// Errors name --threshold.
void validate_threshold(double threshold);

}  // namespace mosaic
