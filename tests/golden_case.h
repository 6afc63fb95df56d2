#pragma once
// A golden case of goldens.json (tools/reference/make_fixtures.py, make_model_goldens.py) as
// the sampler options it was generated with.
#include <nlohmann/json.hpp>

#include "decode/llada_sampler.h"

namespace mosaic::test {

inline GenerateOptions golden_options(const nlohmann::json& c) {
  GenerateOptions o;
  o.gen_length = c["gen_length"];
  o.steps = c["steps"];
  o.block_length = c["block_length"];
  o.temperature = c["temperature"];
  o.cfg_scale = c["cfg_scale"];
  o.remasking = parse_remasking(c["remasking"]);
  o.seed = c["seed"];
  return o;
}

}  // namespace mosaic::test
