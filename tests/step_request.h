#pragma once
// Step requests the tests make often: logits of some positions, or a sampled step.
#include <vector>

#include "models/model.h"

namespace mosaic::test {

inline StepRequest logits_request(const std::vector<int32_t>& tokens, std::vector<int32_t> pos,
                                  const std::vector<std::byte>* hidden_in = nullptr) {
  StepRequest r;
  r.tokens = &tokens;
  r.head_pos = std::move(pos);
  r.emit_logits = true;
  r.hidden_in = hidden_in;
  return r;
}

inline StepRequest sample_request(const std::vector<int32_t>& tokens, std::vector<int32_t> pos,
                                  const SampleParams& sp = {}) {
  StepRequest r;
  r.tokens = &tokens;
  r.head_pos = std::move(pos);
  r.sample = sp;
  return r;
}

// The kind of request, for Model::graph_options, graph and plan.
inline StepRequest logits_kind() {
  StepRequest r;
  r.emit_logits = true;
  return r;
}

// Logits of the block's rows [begin, end) from a cache: a storing step over the whole
// sequence, then a cached step on the same tokens (which must give the same logits as a
// step without a cache, up to rounding, when nothing changed in between).
// `first`: the first head position (a shifted family's block-first position reads its own row
// in a cached step, not the row before it).
inline std::vector<float> cached_block_logits(Model& m, const std::vector<int32_t>& tokens, const CacheOptions& c,
                                              int64_t begin, int64_t end, int64_t first) {
  std::vector<int32_t> block;
  for (int64_t p = first; p < end; ++p) block.push_back(static_cast<int32_t>(p));
  StepRequest store = logits_request(tokens, block);
  store.cache.options = c;
  store.cache.block_begin = begin;
  store.cache.block_end = end;
  store.cache.step = CacheStep::Store;
  if (c.mode == CacheMode::Sparse) {  // Sparse-dLLM's first step keeps no cache
    store.cache.step = CacheStep::Full;
    m.step(store);
    store.cache.step = CacheStep::Store;
  }
  m.step(store);
  StepRequest cached = store;
  cached.cache.step = CacheStep::Cached;
  cached.cache.run_begin = begin;
  cached.cache.run_end = c.mode == CacheMode::Prefix ? static_cast<int64_t>(tokens.size()) : end;
  return m.step(cached).logits;
}

}  // namespace mosaic::test
