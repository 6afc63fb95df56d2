#include "io/tokenizer_pretokenizer.h"

#include <algorithm>
#include <utility>

#include "io/tokenizer_byte_level.h"

namespace mosaic::io::detail {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void PreTokenizer::pre_tokenize(std::string_view piece, std::vector<std::string>& words) const {
  std::vector<std::string> cur{std::string(piece)}, next;
  const auto& A = byte_alphabet();
  for (const PreTokenizerStep& st : steps) {
    next.clear();
    for (const std::string& p : cur) {
      if (st.kind == PreTokenizerStep::ByteLevel) {
        std::string with_space;
        std::string_view src = p;
        if (st.add_prefix_space && p[0] != ' ') {
          with_space = " " + p;
          src = with_space;
        }
        auto map_bytes = [&](std::string_view seg) {
          if (seg.empty()) return;
          std::string m;
          m.reserve(seg.size() * 2);
          for (unsigned char c : seg) m += A.byte_to_text[c];
          next.push_back(std::move(m));
        };
        if (st.regex) {
          size_t prev = 0;
          st.regex->for_each_match(src, [&](size_t a, size_t e) {
            if (prev != a) map_bytes(src.substr(prev, a - prev));
            map_bytes(src.substr(a, e - a));
            prev = e;
          });
          if (prev != src.size()) map_bytes(src.substr(prev));
        } else {
          map_bytes(src);
        }
        continue;
      }
      // Split / Digits: segments with a "matched" flag, then the behavior decides the pieces.
      struct Seg {
        size_t a, e;
        bool match;
      };
      std::vector<Seg> segs;
      size_t prev = 0;
      st.regex->for_each_match(p, [&](size_t a, size_t e) {
        if (prev != a) segs.push_back({prev, a, false});
        segs.push_back({a, e, true});
        prev = e;
      });
      if (prev != p.size()) segs.push_back({prev, p.size(), false});
      if (st.invert)
        for (auto& s : segs) s.match = !s.match;
      std::vector<std::pair<size_t, size_t>> out;
      bool prev_match = false;
      switch (st.behavior) {
        case SplitBehavior::Isolated:
          for (auto& s : segs) out.emplace_back(s.a, s.e);
          break;
        case SplitBehavior::Removed:
          for (auto& s : segs)
            if (!s.match) out.emplace_back(s.a, s.e);
          break;
        case SplitBehavior::MergedWithPrevious:
          for (auto& s : segs) {
            if (s.match && !prev_match && !out.empty())
              out.back().second = s.e;
            else
              out.emplace_back(s.a, s.e);
            prev_match = s.match;
          }
          break;
        case SplitBehavior::MergedWithNext:
          for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
            if (it->match && !prev_match && !out.empty())
              out.back().first = it->a;
            else
              out.emplace_back(it->a, it->e);
            prev_match = it->match;
          }
          std::reverse(out.begin(), out.end());
          break;
        case SplitBehavior::Contiguous:
          for (size_t k = 0; k < segs.size(); ++k) {
            if (k > 0 && segs[k].match == prev_match)
              out.back().second = segs[k].e;
            else
              out.emplace_back(segs[k].a, segs[k].e);
            prev_match = segs[k].match;
          }
          break;
      }
      for (auto [a, e] : out)
        if (e > a) next.emplace_back(p.substr(a, e - a));
    }
    std::swap(cur, next);
  }
  for (auto& w : cur) words.push_back(std::move(w));
}

}  // namespace mosaic::io::detail
