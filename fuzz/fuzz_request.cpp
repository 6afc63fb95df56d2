// libFuzzer target: the server's request bodies (POST /v1/completions and
// /v1/chat/completions). The first byte picks the endpoint; the rest is the body.
// parse_completion_request must return a request within the documented ranges or throw an
// ApiError 400 with a message of bounded length and the body an OpenAI error object; anything
// else (another exception, a crash, a hang on deep nesting) is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "serve/api_error.h"
#include "serve/completion_request.h"

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "fuzz_request: check failed: %s\n", #cond);    \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const mosaic::serve::CompletionRequest r = mosaic::serve::parse_completion_request(body, chat);
    FUZZ_CHECK(r.chat == chat);
    FUZZ_CHECK(chat ? !r.messages.empty() : (r.prompt_is_tokens ? !r.prompt_tokens.empty() : true));
    FUZZ_CHECK(!r.max_tokens || *r.max_tokens >= 1);
    FUZZ_CHECK(r.temperature >= 0 && r.temperature <= 2);
    FUZZ_CHECK(r.top_p > 0 && r.top_p <= 1);
    FUZZ_CHECK(r.top_k >= 0 && r.cfg_scale >= 0);
    FUZZ_CHECK(!r.steps || *r.steps >= 1);
    FUZZ_CHECK(!r.block_length || *r.block_length >= 1);
    FUZZ_CHECK(r.stop.size() <= 4);
    for (int32_t t : r.prompt_tokens) FUZZ_CHECK(t >= 0);
  } catch (const mosaic::serve::ApiError& e) {
    FUZZ_CHECK(e.status() == 400);
    FUZZ_CHECK(std::string(e.what()).size() < 1024);
    FUZZ_CHECK(e.body()["error"]["type"] == "invalid_request_error");
  }
  return 0;
}
