#pragma once
// The body of POST /v1/completions and /v1/chat/completions, parsed and checked: OpenAI's
// fields (model, prompt or messages, max_tokens, temperature, top_p, seed, stream, stop) and
// the diffusion options as extra fields (steps, block_length, alg, remasking, threshold,
// cache, cfg_scale, top_k). Every refusal is an ApiError 400 naming the field.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/family.h"

namespace mosaic::serve {

struct CompletionRequest {
  bool chat = false;
  std::string model;                    // empty: the served model
  std::string prompt;                   // completions: text ...
  std::vector<int32_t> prompt_tokens;   // ... or token ids
  bool prompt_is_tokens = false;
  ChatMessages messages;                // chat
  std::optional<int64_t> max_tokens;    // absent: the server's default
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  bool stream = false, include_usage = false;
  std::vector<std::string> stop;
  std::optional<int64_t> steps, block_length;
  std::optional<double> threshold;
  std::string alg, remasking, cache;  // empty: the sampler's (or the server's) default
  double cfg_scale = 0.0;
};

// Parses a request body; `chat` for /v1/chat/completions. Throws ApiError (400).
CompletionRequest parse_completion_request(const std::string& body, bool chat);

}  // namespace mosaic::serve
