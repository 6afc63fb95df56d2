#include "serve/completion_request.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <limits>

#include "core/error.h"
#include "io/json_file.h"
#include "serve/api_error.h"

namespace mosaic::serve {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const char* kind_of(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

std::optional<double> number(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad(key, fmt::format("'{}' must be a number, not {}", key, kind_of(*it)));
  return it->get<double>();
}

std::optional<int64_t> integer(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) bad(key, fmt::format("'{}' must be an integer, not {}", key, kind_of(*it)));
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(key, fmt::format("'{}' is out of range", key));
  return it->get<int64_t>();
}

std::optional<bool> boolean(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) bad(key, fmt::format("'{}' must be true or false, not {}", key, kind_of(*it)));
  return it->get<bool>();
}

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) bad(key, fmt::format("'{}' must be a string, not {}", key, kind_of(*it)));
  return it->get<std::string>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const json& c, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(param, fmt::format("'{}' must be a string or an array of text parts, not {}", param, kind_of(c)));
  std::string out;
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string())
      bad(param, fmt::format("'{}': only parts {{\"type\": \"text\", \"text\": \"...\"}} are supported", param));
    out += part["text"].get<std::string>();
  }
  return out;
}

void parse_prompt(const json& j, CompletionRequest& r) {
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) bad("prompt", "'prompt' is required");
  const json& p = *it;
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
    return;
  }
  if (p.is_array() && p.size() == 1 && p[0].is_string()) {  // a batch of one prompt
    r.prompt = p[0].get<std::string>();
    return;
  }
  if (p.is_array() && !p.empty() && p[0].is_array())
    bad("prompt", "'prompt' holds several prompts: send one request per prompt");
  if (p.is_array() && !p.empty()) {
    for (const json& t : p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max())
        bad("prompt", "'prompt' must be a string or an array of non-negative token ids");
      r.prompt_tokens.push_back(t.get<int32_t>());
    }
    r.prompt_is_tokens = true;
    return;
  }
  bad("prompt", fmt::format("'prompt' must be a non-empty string or array of token ids, not {}", kind_of(p)));
}

void parse_messages(const json& j, CompletionRequest& r) {
  auto it = j.find("messages");
  if (it == j.end() || !it->is_array() || it->empty()) bad("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(param, fmt::format("'{}' must be an object with role and content", param));
    const std::string role = m.value("role", json()).is_string() ? m["role"].get<std::string>() : "";
    if (role != "system" && role != "user" && role != "assistant" && role != "developer")
      bad(param + ".role", fmt::format("'{}.role' must be system, developer, user or assistant", param));
    if (!m.contains("content") || m["content"].is_null()) bad(param + ".content", fmt::format("'{}.content' is required", param));
    r.messages.emplace_back(role == "developer" ? "system" : role, message_content(m["content"], i));
  }
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, bool chat) {
  json j;
  try {
    // Nesting is bounded (io::parse_json): copying a value recurses once per level.
    j = io::parse_json(body, "the request body");
  } catch (const Error& e) {
    std::string why = e.what();  // quotes the input it stopped at, which may be long
    if (why.size() > 300) why = why.substr(0, 300) + "...";
    bad("", why);
  }
  if (!j.is_object()) bad("", fmt::format("the request body must be a JSON object, not {}", kind_of(j)));
  CompletionRequest r;
  r.chat = chat;
  r.model = text(j, "model");
  if (chat)
    parse_messages(j, r);
  else
    parse_prompt(j, r);

  const bool completion_tokens = chat && j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null();
  r.max_tokens = integer(j, completion_tokens ? "max_completion_tokens" : "max_tokens");
  if (r.max_tokens && *r.max_tokens < 1) bad("max_tokens", fmt::format("'max_tokens' must be at least 1 (got {})", *r.max_tokens));
  if (auto t = number(j, "temperature")) {
    if (*t < 0 || *t > 2) bad("temperature", fmt::format("'temperature' must be in [0, 2] (got {})", *t));
    r.temperature = *t;
  }
  if (auto p = number(j, "top_p")) {
    if (!(*p > 0 && *p <= 1)) bad("top_p", fmt::format("'top_p' must be in (0, 1] (got {})", *p));
    r.top_p = *p;
  }
  if (auto k = integer(j, "top_k")) {
    if (*k < 0) bad("top_k", fmt::format("'top_k' must be >= 0 (got {})", *k));
    r.top_k = *k;
  }
  if (auto s = integer(j, "seed")) r.seed = static_cast<uint64_t>(*s);
  if (auto n = integer(j, "n"); n && *n != 1) bad("n", fmt::format("'n' must be 1 (got {}): send one request per completion", *n));
  if (auto it = j.find("logprobs"); it != j.end() && !it->is_null() && *it != false && *it != 0)
    bad("logprobs", "'logprobs' is not supported");
  if (auto it = j.find("echo"); it != j.end() && *it == true) bad("echo", "'echo' is not supported");
  r.stream = boolean(j, "stream").value_or(false);
  if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*it, "include_usage").value_or(false);
  }
  if (auto it = j.find("stop"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      r.stop.push_back(it->get<std::string>());
    } else if (it->is_array() && it->size() <= 4) {
      for (const json& s : *it) {
        if (!s.is_string()) bad("stop", "'stop' must be a string or an array of up to 4 strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of up to 4 strings");
    }
    for (const std::string& s : r.stop)
      if (s.empty()) bad("stop", "'stop' strings must not be empty");
  }
  r.steps = integer(j, "steps");
  if (r.steps && *r.steps < 1) bad("steps", fmt::format("'steps' must be at least 1 (got {})", *r.steps));
  r.block_length = integer(j, "block_length");
  if (r.block_length && *r.block_length < 1)
    bad("block_length", fmt::format("'block_length' must be at least 1 (got {})", *r.block_length));
  r.threshold = number(j, "threshold");
  r.alg = text(j, "alg");
  r.remasking = text(j, "remasking");
  r.cache = text(j, "cache");
  if (auto c = number(j, "cfg_scale")) {
    if (*c < 0) bad("cfg_scale", fmt::format("'cfg_scale' must be >= 0 (got {})", *c));
    r.cfg_scale = *c;
  }
  return r;
}

}  // namespace mosaic::serve
