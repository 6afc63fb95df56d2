// libFuzzer target: the chat templates (io/chat_template.h; written out in C++, so there is
// no template text to fuzz: the messages and the family are the input). The first byte picks
// the family (byte % 4: llada, dream, llada2, or a name made of the next field, which must be
// refused with mosaic::Error unless it is one of the three) and add_generation_prompt (bit 2);
// the rest is role, content, role, content, ... separated by NUL bytes. Checks: the output is
// exactly the family's fixed parts with every role and content in order, LLaDA's content being
// Python's str.strip() of the message (Jinja's `trim`), recomputed here over code points.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/chat_template.h"

namespace {

#define FUZZ_CHECK(cond)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "fuzz_chat_template: check failed: %s\n", #cond); \
      std::abort();                                                          \
    }                                                                        \
  } while (0)

using Messages = std::vector<std::pair<std::string, std::string>>;

// Python's str.isspace() code points.
bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.strip() of `s` decoded as UTF-8 (over code points; the bytes between kept), or nullopt
// when `s` is not valid UTF-8.
std::optional<std::string> py_strip(std::string_view s) {
  std::vector<std::pair<char32_t, size_t>> cps;  // code point, byte offset
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const unsigned c = p[i];
    const size_t len = c < 0x80                 ? 1
                       : c >= 0xC2 && c <= 0xDF ? 2
                       : c >= 0xE0 && c <= 0xEF ? 3
                       : c >= 0xF0 && c <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || s.size() - i < len) return std::nullopt;
    char32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
    cps.emplace_back(cp, i);
    i += len;
  }
  size_t a = 0, e = cps.size();
  while (a < e && py_space(cps[a].first)) ++a;
  while (e > a && py_space(cps[e - 1].first)) --e;
  const size_t from = a < cps.size() ? cps[a].second : s.size(), to = e < cps.size() ? cps[e].second : s.size();
  return std::string(s.substr(from, to - from));
}

// `part` must stand in `out` at `at`; moves `at` past it.
void expect_at(const std::string& out, size_t& at, std::string_view part) {
  FUZZ_CHECK(out.compare(at, part.size(), part) == 0);
  at += part.size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<std::string> fields(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0) fields.emplace_back();
    else fields.back() += static_cast<char>(data[i]);
  }
  static const char* const kFamilies[] = {"llada", "dream", "llada2"};
  const bool gen = data[0] & 4;
  std::string family;
  if (data[0] % 4 < 3) {
    family = kFamilies[data[0] % 4];
  } else {
    family = fields.front();
    fields.erase(fields.begin());
  }
  Messages m;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) m.emplace_back(fields[i], fields[i + 1]);

  std::string out;
  try {
    out = mosaic::io::apply_chat_template(family, m, gen);
  } catch (const mosaic::Error&) {
    FUZZ_CHECK(family != "llada" && family != "dream" && family != "llada2");
    return 0;
  }
  size_t at = 0;
  if (family == "llada") {
    std::vector<std::string> trimmed;
    for (const auto& msg : m) {
      auto t = py_strip(msg.second);
      if (!t) return 0;  // not valid UTF-8: str.strip() is not defined for it; no crash is the check
      trimmed.push_back(*t);
    }
    if (!m.empty()) expect_at(out, at, "<|startoftext|>");
    for (size_t i = 0; i < m.size(); ++i)
      expect_at(out, at, "<|start_header_id|>" + m[i].first + "<|end_header_id|>\n\n" + trimmed[i] + "<|eot_id|>");
    if (gen) expect_at(out, at, "<|start_header_id|>assistant<|end_header_id|>\n\n");
  } else if (family == "dream") {
    if (m.empty() || m[0].first != "system")
      expect_at(out, at, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    for (const auto& [role, content] : m) expect_at(out, at, "<|im_start|>" + role + "\n" + content + "<|im_end|>\n");
    if (gen) expect_at(out, at, "<|im_start|>assistant\n");
  } else {
    for (const auto& [role, content] : m) {
      const char* r = role == "user" ? "HUMAN" : role == "system" ? "SYSTEM" : "ASSISTANT";
      expect_at(out, at, std::string("<role>") + r + "</role>" + content + "<|role_end|>");
    }
    if (gen) expect_at(out, at, "<role>ASSISTANT</role>");
  }
  FUZZ_CHECK(at == out.size());
  return 0;
}
