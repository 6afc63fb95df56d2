#include "io/tokenizer_added_tokens.h"

#include <algorithm>

#include "io/utf8.h"

namespace mosaic::io::detail {
namespace {

// Unicode White_Space (Rust's char::is_whitespace).
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace

std::string word_char_class() {
  // Alphabetic is Letter, Letter_Number and Other_Alphabetic; the members of Other_Alphabetic
  // outside Mark are the circled and squared Latin letters. (PCRE2 before 10.40 has no
  // \p{Alphabetic}.) Regex adds the code points of newer Unicode versions to \p{..}.
  return "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}"
         "\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}]";
}

void AddedTrie::insert(std::string_view s, int token) {
  int node = 0;
  for (unsigned char c : s) {
    auto& next = nodes_[node].next;
    auto it = std::find_if(next.begin(), next.end(), [&](auto& p) { return p.first == c; });
    if (it == next.end()) {
      nodes_.push_back({});
      nodes_[node].next.emplace_back(c, static_cast<int>(nodes_.size() - 1));
      node = static_cast<int>(nodes_.size() - 1);
    } else {
      node = it->second;
    }
  }
  nodes_[node].token = token;
  first_[static_cast<unsigned char>(s[0])] = true;
  empty_ = false;
}

std::pair<int, size_t> AddedTrie::longest(std::string_view s, size_t i) const {
  if (!first_[static_cast<unsigned char>(s[i])]) return {-1, 0};
  int node = 0, best = -1;
  size_t best_len = 0;
  for (size_t k = i; k < s.size(); ++k) {
    auto c = static_cast<unsigned char>(s[k]);
    const auto& next = nodes_[node].next;
    auto it = std::find_if(next.begin(), next.end(), [&](auto& p) { return p.first == c; });
    if (it == next.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) {
      best = nodes_[node].token;
      best_len = k + 1 - i;
    }
  }
  return {best, best_len};
}

void AddedTokens::split(std::string_view s, const AddedTrie& trie, bool parse_special,
                        const std::function<void(std::string_view, int)>& emit) const {
  if (trie.empty()) {
    if (!s.empty()) emit(s, -1);
    return;
  }
  size_t start_offset = 0;  // end of the last emitted piece
  for (size_t i = 0; i < s.size();) {
    auto [tok, len] = trie.longest(s, i);
    if (tok < 0) {
      ++i;
      continue;
    }
    const AddedToken& a = tokens[tok];
    size_t start = i, stop = i + len;
    i = stop;  // the match is consumed even when it is then ignored
    if (a.special && !parse_special) continue;
    if (a.single_word) {
      bool start_ok = start == 0 || !word_end_re->search(s.substr(0, start));
      bool stop_ok = stop == s.size() || !word_start_re->search(s.substr(stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (a.lstrip) {
      size_t k = start;  // back over whitespace characters
      while (k > 0) {
        size_t b = k - 1;
        while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
        size_t tmp = b;
        if (!is_white_space(utf8_next(s, tmp))) break;
        k = b;
      }
      start = std::max(k, start_offset);
    }
    if (a.rstrip) {
      while (stop < s.size()) {
        size_t tmp = stop;
        if (!is_white_space(utf8_next(s, tmp))) break;
        stop = tmp;
      }
      i = stop;
    }
    if (start_offset < start) emit(s.substr(start_offset, start - start_offset), -1);
    emit(s.substr(start, stop - start), tok);
    start_offset = stop;
  }
  if (start_offset < s.size()) emit(s.substr(start_offset), -1);
}

}  // namespace mosaic::io::detail
