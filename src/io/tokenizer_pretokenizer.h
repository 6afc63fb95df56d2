#pragma once
// The pre-tokenizer: splits normalized text into the pieces ("words") that BPE encodes one
// at a time. Steps run in order on every piece of the previous step: Split (regex or string
// pattern, with a behavior), Digits (a Split on \p{N}), ByteLevel (optional GPT-2 regex split,
// then bytes -> ByteLevel alphabet).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer_regex.h"

namespace mosaic::io::detail {

// The GPT-2 pre-tokenization pattern (ByteLevel with use_regex).
extern const char* const kGpt2Pattern;

// What a Split step does with the matches of its pattern (`tokenizers`' SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
  enum Kind { ByteLevel, Split } kind = Split;
  bool add_prefix_space = false;  // ByteLevel
  std::shared_ptr<Regex> regex;   // ByteLevel with use_regex, Split, Digits
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
};

struct PreTokenizer {
  std::vector<PreTokenizerStep> steps;  // none: the piece is one word

  // Appends the words of `piece` (non-empty) to `words`.
  void pre_tokenize(std::string_view piece, std::vector<std::string>& words) const;
};

}  // namespace mosaic::io::detail
