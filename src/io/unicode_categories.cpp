#include "io/unicode_categories.h"

#include <cstdint>
#include <fmt/format.h>

namespace mosaic::io::detail {
namespace {

struct AddedRange {
  uint32_t first, last;
  const char* category;  // two letters: "Lo", "Mn", ...
};

constexpr AddedRange kAdded[] = {
#include "io/unicode_categories_data.inc"
};

}  // namespace

std::string added_code_points(std::string_view category) {
  std::string out;
  for (const auto& r : kAdded) {
    if (std::string_view(r.category).substr(0, category.size()) != category) continue;
    out += fmt::format("\\x{{{:X}}}", r.first);
    if (r.last != r.first) out += fmt::format("-\\x{{{:X}}}", r.last);
  }
  return out;
}

}  // namespace mosaic::io::detail
