#pragma once
// LLaDA's official sampler (generate.py): semi-autoregressive blocks, a fixed number of
// tokens committed per step, chosen by confidence (low_confidence) or at random, optional
// gumbel-max temperature and classifier-free guidance. Same tokens as the reference.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/model.h"

namespace mosaic {

struct GenerateOptions {
  int64_t gen_length = 128;
  int64_t steps = 128;
  int64_t block_length = 128;
  double temperature = 0.0;
  float cfg_scale = 0.0f;
  Remasking remasking = Remasking::LowConfidence;
  uint64_t seed = 0;
};

struct StepEvent {
  int64_t block = 0, num_blocks = 0;
  int64_t step = 0, steps_per_block = 0;  // within the block
  int64_t global_step = 0;
  int64_t committed = 0;  // tokens committed by this step
  StepStats stats;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // the whole sequence: prompt then generated
  int64_t prompt_length = 0;
  std::vector<StepEvent> steps;
  double total_ms = 0;
};

using StepCallback = std::function<void(const StepEvent&, const std::vector<int32_t>& tokens)>;

// Checks the options against the schedule's rules; the messages name the CLI flags.
void validate_generate_options(const GenerateOptions& o);

GenerateResult llada_generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const StepCallback& on_step = {});

Remasking parse_remasking(const std::string& s);

}  // namespace mosaic
