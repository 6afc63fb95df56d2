#pragma once
// The regexes of tokenizer.json (Split patterns, the GPT-2 pattern, single_word checks), run
// on PCRE2 (UTF + UCP, JIT when available) with the matching rules of Oniguruma, which
// `tokenizers` uses.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

struct pcre2_real_code_8;  // pcre2_code for 8-bit code units; pcre2.h stays in the .cpp

namespace mosaic::io::detail {

class Regex {
 public:
  // literal: match `pattern` as plain text (a Split "String" pattern).
  // `where` names the file and field, for the error message.
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls f(start, end) for each match in s, left to right, with the iteration rules of
  // the `onig` crate that `tokenizers` uses: an empty match right where the previous match
  // ended is skipped and the search moves on by one character.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    MatchCursor at;
    while (next_match(s, at)) f(at.start, at.end);
  }

  // True if the regex matches somewhere in s.
  bool search(std::string_view s) const;

 private:
  struct MatchCursor {
    size_t last_end = 0;                  // where the next search starts
    std::optional<size_t> last_match_end;
    size_t start = 0, end = 0;            // the match found by next_match
  };
  bool next_match(std::string_view s, MatchCursor& at) const;

  pcre2_real_code_8* code_ = nullptr;
};

}  // namespace mosaic::io::detail
