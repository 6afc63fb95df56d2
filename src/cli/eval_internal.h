#pragma once
// What `mosaic eval`'s files share: the options of --generate (eval_generate.cpp).
#include <cstdint>
#include <string>
#include <vector>

#include "cli/session.h"
#include "models/kv_cache.h"

namespace mosaic::cli {

// One configuration to score: a cache mode, with threshold decoding when threshold > 0.
struct EvalMode {
  CacheMode cache = CacheMode::None;
  double threshold = 0.0;
};

struct GenerationEvalOptions {
  std::vector<EvalMode> modes;  // the first is the baseline of the agreement column
  int64_t prompt_length = 64, gen_length = 32, steps = 32, block_length = 8, max_windows = 20;
  double sparse_keep = 0.5;
  int sparse_kernel = 3;
};

// "none,dual@0.3": cache modes, each optionally with its threshold after '@'.
std::vector<EvalMode> parse_eval_modes(const std::string& s);

void eval_generations(Session& s, const std::vector<int32_t>& text, const GenerationEvalOptions& o,
                      const std::string& format);

}  // namespace mosaic::cli
