#include "io/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "io/unicode_categories.h"
#include "io/utf8.h"

namespace mosaic::io::detail {
namespace {

bool is_general_category(const std::string& name) {
  static const std::string kinds = "LMNPSZ";
  if (name.size() == 1) return kinds.find(name[0]) != std::string::npos;
  return name.size() == 2 && (kinds.find(name[0]) != std::string::npos || name == "Cf" || name == "Co") &&
         name[1] >= 'a' && name[1] <= 'z';
}

// `tokenizers` runs its regexes on Oniguruma; mosaic runs them on PCRE2 (UTF + UCP). Where the
// two read an escape differently, the escape is spelled out so that PCRE2 matches what
// Oniguruma matches:
//   \s \S        Oniguruma's \s is Unicode White_Space; PCRE2's also takes U+180E.
//   \p{X} \P{X}  (X a general category, also \p{^X}) Oniguruma has Unicode 16.0 data,
//                the system PCRE2 maybe older (10.42: Unicode 14.0); the code points assigned
//                since are added (unicode_categories.h).
// A negated escape inside a character class ([^\S], [\P{L}]) has no spelled-out form and is
// left as it is; so are \Q...\E, POSIX classes and scripts (\p{Han}). \w, \d and \h are not
// rewritten either (Oniguruma's \h is a hex digit, PCRE2's a horizontal space): the patterns
// of GPT-2, Llama-3 and Qwen2 use none of these.
std::string onig_compatible(const std::string& p) {
  static const std::string ws = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  // Writes a set of characters given by the inside of a class: inside a class its members,
  // outside [members] or [^members]. False if that cannot be written (negated, in a class).
  auto write_set = [&](const std::string& members, bool negated) {
    if (in_class && negated) return false;
    out += in_class ? members : (negated ? "[^" : "[") + members + "]";
    return true;
  };
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[i + 1];
      if (d == 'Q') {  // \Q...\E: literal text, copy as is
        size_t e = p.find("\\E", i + 2);
        size_t stop = e == std::string::npos ? p.size() : e + 2;
        out.append(p, i, stop - i);
        i = stop - 1;
        continue;
      }
      if ((d == 'p' || d == 'P') && i + 2 < p.size() && p[i + 2] == '{') {
        size_t last = p.find('}', i + 3);  // the escape is p[i..last]
        if (last == std::string::npos) last = p.size() - 1;  // PCRE2 reports the error
        std::string name = p.substr(i + 3, last - (i + 3));
        bool negated = d == 'P';
        if (!name.empty() && name[0] == '^') {
          negated = !negated;
          name.erase(0, 1);
        }
        std::string added = is_general_category(name) ? added_code_points(name) : "";
        if (added.empty() || !write_set("\\p{" + name + "}" + added, negated)) out.append(p, i, last + 1 - i);
        i = last;
        continue;
      }
      if ((d != 's' && d != 'S') || !write_set(ws, d == 'S')) {
        out += c;
        out += d;
      }
      ++i;
      continue;
    }
    if (!in_class) {
      out += c;
      if (c == '[') {
        in_class = true;
        if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
        if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // leading ] is literal
      }
      continue;
    }
    if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
      size_t e = p.find(":]", i + 2);
      size_t stop = e == std::string::npos ? p.size() : e + 2;
      out.append(p, i, stop - i);
      i = stop - 1;
      continue;
    }
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

// Per-thread match data, and a JIT stack larger than the 32 KiB default.
struct Scratch {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  Scratch() { pcre2_jit_stack_assign(mc, nullptr, js); }
  ~Scratch() {
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

Regex::Regex(const std::string& pattern, bool literal, const std::string& where) {
  int err = 0;
  PCRE2_SIZE off = 0;
  std::string pat = literal ? pattern : onig_compatible(pattern);
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), opts, &err, &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    MOSAIC_FAIL("{}: cannot compile regex \"{}\" at offset {}: {}", where, pattern, off,
                reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // best effort: falls back to the interpreter
}

Regex::~Regex() { pcre2_code_free(code_); }

bool Regex::next_match(std::string_view s, MatchCursor& at) const {
  Scratch& sc = scratch();
  while (at.last_end <= s.size()) {
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), at.last_end,
                         PCRE2_NO_UTF_CHECK, sc.md, sc.mc);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      MOSAIC_FAIL("tokenizer regex match failed: {}", reinterpret_cast<const char*>(buf));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.md);
    size_t a = ov[0], e = ov[1];
    if (a == e && at.last_match_end && *at.last_match_end == e) {
      at.last_end += at.last_end < s.size() ? utf8_seq_len(static_cast<unsigned char>(s[at.last_end])) : 1;
      continue;
    }
    at.last_end = e;
    at.last_match_end = e;
    at.start = a;
    at.end = e;
    return true;
  }
  return false;
}

bool Regex::search(std::string_view s) const {
  Scratch& sc = scratch();
  int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, PCRE2_NO_UTF_CHECK,
                       sc.md, sc.mc);
  return rc >= 0;
}

}  // namespace mosaic::io::detail
