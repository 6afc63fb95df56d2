#include "cli/chat_view.h"

#include <algorithm>

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

int terminal_lines(const std::string& text, int width) {
  width = std::max(width, 1);
  int lines = 0, cols = 0;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b && i + 1 < text.size() && text[i + 1] == '[') {  // CSI ... final byte
      i += 2;
      while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;
      ++i;
      continue;
    }
    if (c == '\n') {
      lines += std::max(1, (cols + width - 1) / width);
      cols = 0;
      ++i;
      continue;
    }
    if ((c & 0xC0) != 0x80) ++cols;  // a code point starts here
    ++i;
  }
  return lines + std::max(1, (cols + width - 1) / width);
}

}  // namespace mosaic::cli
