#pragma once
// Unicode Normalization Form C, as the `tokenizers` NFC normalizer applies it: with Unicode 9.0
// data (see unicode_nfc_tables.cpp).
#include <string>
#include <string_view>

namespace mosaic::io::detail {

// NFC of `s` (valid UTF-8): canonical decomposition, canonical ordering, canonical
// composition (UAX #15).
std::string nfc(std::string_view s);

}  // namespace mosaic::io::detail
