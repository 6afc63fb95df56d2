#pragma once
// From a parsed request to a generation the scheduler can run: the prompt's tokens (the chat
// template for chat requests), the model family's sampler with the request's options over the
// server's defaults, and the shape the memory plan checks. Errors are ApiError 400 naming the
// request's field.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decode/sampler.h"
#include "decode/sequence.h"
#include "io/tokenizer.h"
#include "models/generation_plan.h"
#include "models/kv_cache.h"
#include "models/model.h"
#include "serve/completion_request.h"

namespace mosaic::serve {

// What a request gets when it does not say.
struct ServeDefaults {
  int64_t max_tokens = 128;
  std::string cache = "none";
};

struct PreparedGeneration {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 0;             // tokens the answer may hold (the generated region)
  std::unique_ptr<Sampler> sampler;
  Sequence sequence;
  CacheOptions cache;
  GenerationShape shape;              // for the memory plan's check
  bool guided = false;
  std::vector<int32_t> end_ids;       // tokens that end the text (eos, end of turn)
  std::vector<std::string> stop;      // strings that end the text
};

PreparedGeneration prepare_generation(const Model& model, const io::Tokenizer& tok, const CompletionRequest& req,
                                      const ServeDefaults& defaults);

}  // namespace mosaic::serve
