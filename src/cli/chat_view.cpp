#include "cli/chat_view.h"

#include <locale.h>
#include <wchar.h>

#include <algorithm>

#include "io/utf8.h"

namespace mosaic::cli {

namespace {

constexpr const char* kDim = "\x1b[2m";
constexpr const char* kFresh = "\x1b[1;36m";  // bold cyan
constexpr const char* kReset = "\x1b[0m";

}  // namespace

std::string render_answer(const io::Tokenizer& tok, const AnswerState& a, bool styled) {
  const std::vector<int32_t>& g = *a.generated;
  int64_t n = static_cast<int64_t>(g.size());
  for (int64_t i = 0; i < n; ++i)
    if (std::find(a.end_ids.begin(), a.end_ids.end(), g[i]) != a.end_ids.end()) {
      n = i;
      break;
    }
  // Runs of one kind (committed, fresh, masked) are decoded whole, so that a character whose
  // bytes span tokens shows once its run holds them all.
  std::string out;
  for (int64_t i = 0; i < n;) {
    const bool masked = g[i] == a.mask_id;
    const bool fresh = !masked && i < static_cast<int64_t>(a.fresh.size()) && a.fresh[i];
    int64_t j = i;
    std::vector<int32_t> run;
    while (j < n && (g[j] == a.mask_id) == masked &&
           (masked || (j < static_cast<int64_t>(a.fresh.size()) && a.fresh[j]) == fresh))
      run.push_back(g[j++]);
    if (masked) {
      std::string dots;
      for (size_t k = 0; k < run.size(); ++k) dots += styled ? "\u2591" : "_";
      out += styled ? kDim + dots + kReset : dots;
    } else {
      const std::string text = tok.decode(run, true);
      out += styled && fresh ? kFresh + text + kReset : text;
    }
    i = j;
  }
  return out;
}

namespace {

// Columns a code point takes on a terminal: glibc's wcwidth under a UTF-8 locale (2 for CJK and
// most emoji, 0 for combining marks and controls), set for this thread only.
int columns(char32_t cp) {
  static const locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
  if (!utf8) return 1;
  const locale_t old = uselocale(utf8);
  const int w = wcwidth(static_cast<wchar_t>(cp));
  uselocale(old);
  return std::max(w, 0);
}

// If an escape sequence (CSI ... final byte) starts at i, the index past it; else i.
size_t csi_end(const std::string& text, size_t i) {
  if (i + 1 >= text.size() || text[i] != 0x1b || text[i + 1] != '[') return i;
  i += 2;
  while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;
  return std::min(i + 1, text.size());
}

}  // namespace

std::vector<size_t> line_starts(const std::string& text, int width) {
  width = std::max(width, 1);
  std::vector<size_t> starts = {0};
  int col = 0;
  for (size_t i = 0; i < text.size();) {
    if (const size_t past = csi_end(text, i); past != i) {  // escape sequences take no columns
      i = past;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      col = 0, ++i;
      starts.push_back(i);
      continue;
    }
    const size_t at = i;
    size_t bad = 0;
    int w = 1;  // a byte that is not UTF-8 shows as one replacement character
    if (const size_t n = io::detail::utf8_valid_at(text, i, bad); n > 0) {
      w = columns(io::detail::utf8_next(text, i));
    } else {
      i += bad;
    }
    if (w == 0) continue;
    if (col + w > width) col = 0, starts.push_back(at);  // a wide character that does not fit moves down whole
    col += w;
  }
  return starts;
}

int terminal_lines(const std::string& text, int width) { return static_cast<int>(line_starts(text, width).size()); }

size_t fresh_at(const std::string& styled) { return styled.rfind(kFresh); }

std::string visible_lines(const std::string& text, int width, int max_lines, size_t focus) {
  const std::vector<size_t> starts = line_starts(text, width);
  const int n = static_cast<int>(starts.size());
  max_lines = std::max(max_lines, 1);
  if (n <= max_lines) return text;
  const int focus_line =
      static_cast<int>(std::upper_bound(starts.begin(), starts.end(), focus) - starts.begin()) - 1;
  const int first = std::clamp(focus_line - max_lines / 2, 0, n - max_lines);
  const size_t begin = starts[static_cast<size_t>(first)];
  const size_t end = first + max_lines < n ? starts[static_cast<size_t>(first + max_lines)] : text.size();
  // The style in force at the cut: the last SGR sequence (CSI ... m) before it.
  std::string style;
  for (size_t i = 0; i < begin;) {
    const size_t past = csi_end(text, i);
    if (past == i) {
      ++i;
      continue;
    }
    if (text[past - 1] == 'm') style = text.substr(i, past - i);
    i = past;
  }
  std::string out = style + text.substr(begin, end - begin);
  while (!out.empty() && out.back() == '\n') out.pop_back();  // the window's last line ends the draw
  return end < text.size() ? out + kReset : out;
}

}  // namespace mosaic::cli
