// The server's request bodies: OpenAI's fields and the diffusion extras parsed, and every
// refusal an ApiError 400 that names the field; the library's flag names in the API's words.
#include <gtest/gtest.h>

#include "serve/api_error.h"
#include "serve/completion_request.h"

namespace mosaic::serve {
namespace {

// The param and message of the refusal of `body` (empty param and message: accepted).
std::pair<std::string, std::string> refusal(const std::string& body, bool chat = false) {
  try {
    parse_completion_request(body, chat);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.body()["error"]["type"], "invalid_request_error");
    return {e.param(), e.what()};
  }
  return {};
}

TEST(CompletionRequest, ParsesOpenAisFieldsAndTheDiffusionExtras) {
  const CompletionRequest r = parse_completion_request(
      R"({"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 3,
          "stream": true, "stream_options": {"include_usage": true}, "stop": ["\n", "END"], "steps": 14,
          "block_length": 7, "alg": "entropy", "remasking": "random", "threshold": 0.9, "cache": "dual",
          "cfg_scale": 1.5, "top_k": 4})",
      false);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.seed, 3u);
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(r.steps, 14);
  EXPECT_EQ(r.block_length, 7);
  EXPECT_EQ(r.alg, "entropy");
  EXPECT_EQ(r.remasking, "random");
  EXPECT_EQ(r.threshold, 0.9);
  EXPECT_EQ(r.cache, "dual");
  EXPECT_DOUBLE_EQ(r.cfg_scale, 1.5);
  EXPECT_EQ(r.top_k, 4);

  const CompletionRequest t = parse_completion_request(R"({"prompt": [1, 2, 3]})", false);
  EXPECT_TRUE(t.prompt_is_tokens);
  EXPECT_EQ(t.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(t.max_tokens.has_value());

  const CompletionRequest c = parse_completion_request(
      R"({"messages": [{"role": "developer", "content": "Be brief"},
                       {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
          "max_completion_tokens": 5})",
      true);
  ASSERT_EQ(c.messages.size(), 2u);
  EXPECT_EQ(c.messages[0], (std::pair<std::string, std::string>{"system", "Be brief"}));
  EXPECT_EQ(c.messages[1], (std::pair<std::string, std::string>{"user", "Hi there"}));
  EXPECT_EQ(c.max_tokens, 5);
}

TEST(CompletionRequest, RefusalsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", ""},
      {"[1, 2]", ""},
      {R"({"max_tokens": 4})", "prompt"},
      {R"({"prompt": {"a": 1}})", "prompt"},
      {R"({"prompt": [["a"], ["b"]]})", "prompt"},
      {R"({"prompt": [1, -2]})", "prompt"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": "8"})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", "max_tokens"},
      {R"({"prompt": "x", "temperature": -0.1})", "temperature"},
      {R"({"prompt": "x", "temperature": 2.5})", "temperature"},
      {R"({"prompt": "x", "top_p": 0})", "top_p"},
      {R"({"prompt": "x", "top_k": -1})", "top_k"},
      {R"({"prompt": "x", "n": 2})", "n"},
      {R"({"prompt": "x", "logprobs": 3})", "logprobs"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {R"({"prompt": "x", "stop": [""]})", "stop"},
      {R"({"prompt": "x", "stream": "yes"})", "stream"},
      {R"({"prompt": "x", "steps": 0})", "steps"},
      {R"({"prompt": "x", "block_length": -3})", "block_length"},
      {R"({"prompt": "x", "cfg_scale": -1})", "cfg_scale"},
      {R"({"prompt": "x", "model": 5})", "model"},
  };
  for (const auto& [body, param] : cases) {
    SCOPED_TRACE(body);
    const auto [p, msg] = refusal(body);
    EXPECT_FALSE(msg.empty()) << "accepted";
    EXPECT_EQ(p, param) << msg;
  }
  EXPECT_EQ(refusal(R"({"messages": []})", true).first, "messages");
  EXPECT_EQ(refusal(R"({"messages": [{"role": "robot", "content": "x"}]})", true).first, "messages[0].role");
  EXPECT_EQ(refusal(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true).first,
            "messages[0].content");
  // A body of deep nesting or a huge bad token is refused with a message of bounded length.
  const auto [p, msg] = refusal(std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_FALSE(msg.empty());
  EXPECT_LT(refusal("\"" + std::string(100000, 'a')).second.size(), 500u);
}

TEST(ApiError, BodiesAndTheLibrarysWords) {
  const ApiError e(404, "no such model", "model", "model_not_found");
  EXPECT_EQ(e.body()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e.body()["error"]["code"], "model_not_found");
  EXPECT_EQ(ApiError(401, "x").type(), "authentication_error");
  EXPECT_EQ(ApiError(429, "x").type(), "rate_limit_error");
  EXPECT_EQ(ApiError(503, "x").type(), "server_error");
  EXPECT_TRUE(ApiError(400, "x").body()["error"]["param"].is_null());
  EXPECT_EQ(api_words("--block-length 3 must divide --gen-length 8"), "block_length 3 must divide max_tokens 8");
  EXPECT_EQ(api_words("a--b and -- alone and --x"), "a--b and -- alone and x");
}

}  // namespace
}  // namespace mosaic::serve
