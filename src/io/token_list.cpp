#include "io/token_list.h"

#include <charconv>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace mosaic::io {

namespace {

// The entry as quoted in an error: at most 40 bytes of it.
std::string quote(std::string_view s) {
  constexpr size_t kMax = 40;
  return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

}  // namespace

std::vector<int32_t> parse_token_list(std::string_view text, int64_t vocab_size) {
  MOSAIC_CHECK(!text.empty(), "--prompt-tokens is empty (use comma-separated ids: 1,2,3)");
  std::vector<int32_t> ids;
  size_t n = 1;  // the entry's number, for the messages
  for (size_t start = 0;; ++n) {
    const size_t comma = text.find(',', start);
    std::string_view item = text.substr(start, comma - start);  // to the end when there is no comma
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    MOSAIC_CHECK(a != std::string_view::npos, "--prompt-tokens: entry {} is empty (use comma-separated ids: 1,2,3)",
                 n);
    item = item.substr(a, b - a + 1);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    MOSAIC_CHECK(ec != std::errc::invalid_argument && end == item.data() + item.size(),
                 "--prompt-tokens: entry {} '{}' is not an integer token id", n, quote(item));
    MOSAIC_CHECK(ec == std::errc() && v >= 0 && v < vocab_size && v <= INT32_MAX,
                 "--prompt-tokens: entry {}: id {} is outside the model's vocabulary [0, {})", n, quote(item),
                 vocab_size);
    ids.push_back(static_cast<int32_t>(v));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return ids;
}

}  // namespace mosaic::io
