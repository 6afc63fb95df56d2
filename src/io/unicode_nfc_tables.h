#pragma once
// Lookups into the Unicode Character Database data that NFC needs (unicode_nfc_tables.cpp
// holds the tables). Hangul syllables are not in the tables: unicode_nfc.cpp computes them.
#include <cstdint>

namespace mosaic::io::detail {

// Canonical combining class (0 for starters and unlisted code points).
int combining_class(char32_t cp);

// One step of canonical decomposition: {code point, first, second (0: singleton), 1 if
// first+second compose back to it in NFC}, or nullptr when cp has none.
const uint32_t* canonical_decomposition(char32_t cp);

// The primary composite of the pair (a, b), or 0 when there is none (or it is excluded
// from composition).
char32_t canonical_composition(char32_t a, char32_t b);

}  // namespace mosaic::io::detail
