#include "io/chat_template.h"

#include "core/error.h"

namespace mosaic::io {
namespace {

// Python's str.isspace() for the code points it accepts (Jinja's `trim` is str.strip()).
size_t space_len_at(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  if ((b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x20)) return 1;
  auto is = [&](std::string_view seq) { return s.compare(i, seq.size(), seq) == 0; };
  if (is("\xC2\x85") || is("\xC2\xA0")) return 2;
  if (is("\xE1\x9A\x80") || is("\xE2\x80\xA8") || is("\xE2\x80\xA9") || is("\xE2\x80\xAF") ||
      is("\xE2\x81\x9F") || is("\xE3\x80\x80"))
    return 3;
  if (b == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
      static_cast<unsigned char>(s[i + 2]) >= 0x80 && static_cast<unsigned char>(s[i + 2]) <= 0x8A)
    return 3;  // U+2000..U+200A
  return 0;
}

std::string trim(std::string_view s) {
  size_t a = 0;
  while (a < s.size()) {
    size_t n = space_len_at(s, a);
    if (!n) break;
    a += n;
  }
  size_t e = s.size();
  while (e > a) {
    size_t b = e - 1;  // start of the last character
    while (b > a && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    size_t n = space_len_at(s, b);
    if (n != e - b) break;
    e = b;
  }
  return std::string(s.substr(a, e - a));
}

}  // namespace

std::string apply_chat_template(std::string_view family,
                                const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt) {
  std::string out;
  if (family == "llada") {
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i == 0) out += "<|startoftext|>";
      out += "<|start_header_id|>" + messages[i].first + "<|end_header_id|>\n\n" + trim(messages[i].second) +
             "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
  }
  if (family == "dream") {
    if (messages.empty() || messages[0].first != "system")
      out += "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    for (const auto& [role, content] : messages) out += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }
  if (family == "llada2") {
    for (const auto& [role, content] : messages) {
      const std::string r = role == "user" ? "HUMAN" : role == "system" ? "SYSTEM" : "ASSISTANT";
      out += "<role>" + r + "</role>" + content + "<|role_end|>";
    }
    if (add_generation_prompt) out += "<role>ASSISTANT</role>";
    return out;
  }
  MOSAIC_FAIL("unknown chat template family \"{}\" (mosaic knows: llada, dream, llada2)", family);
}

}  // namespace mosaic::io
