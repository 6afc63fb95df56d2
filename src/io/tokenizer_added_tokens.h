#pragma once
// Added tokens (tokenizer.json's `added_tokens`): matched in the text before the model sees
// it, leftmost-longest, with the lstrip / rstrip / single_word options of `tokenizers`.
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/tokenizer_bpe.h"
#include "io/tokenizer_regex.h"

namespace mosaic::io::detail {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Byte trie over added tokens for leftmost-longest matching.
class AddedTrie {
 public:
  void insert(std::string_view s, int token);
  bool empty() const { return empty_; }
  // Longest token starting at s[i]: {token, length}, or {-1, 0}.
  std::pair<int, size_t> longest(std::string_view s, size_t i) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> next;
    int token = -1;
  };
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_{};
  bool empty_ = true;
};

// A PCRE2 class for what `tokenizers` counts as a word character around a single_word token:
// the \w of Rust's regex crate (Unicode Word: Alphabetic, Mark, Decimal_Number,
// Connector_Punctuation, Join_Control), not Oniguruma's nor PCRE2's.
std::string word_char_class();

struct AddedTokens {
  std::vector<AddedToken> tokens;  // in file order; the tries hold indices into it
  StringMap by_content;            // content -> id
  // Tokens with normalized=false are matched in the raw text, the others in normalized text.
  AddedTrie raw_trie, normalized_trie;
  std::shared_ptr<Regex> word_start_re, word_end_re;  // single_word checks

  // Splits s on the added tokens of `trie` and calls emit(piece, index into `tokens` or -1)
  // for each non-empty piece, in order. Special tokens count only when parse_special.
  void split(std::string_view s, const AddedTrie& trie, bool parse_special,
             const std::function<void(std::string_view, int)>& emit) const;
};

}  // namespace mosaic::io::detail
