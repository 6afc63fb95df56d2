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

}  // namespace mosaic::test
