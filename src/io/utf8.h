#pragma once
// UTF-8 helpers for the tokenizer: walking, encoding and validating code points, and the
// lossy conversion `tokenizers` applies to decoded bytes.
#include <cstddef>
#include <string>
#include <string_view>

namespace mosaic::io::detail {

// Length of the sequence that starts with `lead` (a valid lead byte).
size_t utf8_seq_len(unsigned char lead);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
char32_t utf8_next(std::string_view s, size_t& i);

void utf8_append(std::string& out, char32_t cp);

// Length of the valid UTF-8 sequence at s[i], or 0 with `bad` = number of bytes that form
// the maximal invalid subpart (at least 1), as Unicode / Rust's from_utf8_lossy define it.
size_t utf8_valid_at(std::string_view s, size_t i, size_t& bad);

// Each maximal invalid subpart becomes U+FFFD (Rust's String::from_utf8_lossy).
std::string utf8_lossy(std::string_view s);

}  // namespace mosaic::io::detail
