#include "decode/cached_steps.h"

#include "core/error.h"

namespace mosaic {

CacheRequest cache_step(const CacheOptions& o, int64_t step, int64_t begin, int64_t end, int64_t length) {
  CacheRequest r;
  r.options = o;
  r.block_begin = begin;
  r.block_end = end;
  if (o.mode == CacheMode::None) return r;
  // Sparse-dLLM's first step runs without a cache and its second builds it (the block's
  // queries after one step of denoising choose what to keep); Fast-dLLM stores at once.
  const int64_t store_step = o.mode == CacheMode::Sparse ? 1 : 0;
  if (step < store_step) {
    r.step = CacheStep::Full;
  } else if (step == store_step) {
    r.step = CacheStep::Store;
  } else {
    r.step = CacheStep::Cached;
    r.run_begin = begin;
    r.run_end = o.mode == CacheMode::Prefix ? length : end;
  }
  return r;
}

int64_t threshold_count(const std::vector<int32_t>& order, const std::vector<float>& conf, double threshold) {
  if (order.empty()) return 0;
  int64_t k = 1;
  while (k < static_cast<int64_t>(order.size()) && static_cast<double>(conf[order[k]]) >= threshold) ++k;
  return k;
}

void validate_threshold(double threshold) {
  MOSAIC_CHECK(threshold > 0.0 && threshold <= 1.0, "--threshold must be in (0, 1] (got {})", threshold);
}

}  // namespace mosaic
