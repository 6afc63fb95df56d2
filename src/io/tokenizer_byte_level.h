#pragma once
// The ByteLevel alphabet (GPT-2's bytes_to_unicode): each byte is shown as one printable
// character, so that byte-level BPE works on text. The ByteLevel pre-tokenizer maps bytes to
// it; the ByteLevel decoder maps it back.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mosaic::io::detail {

struct ByteAlphabet {
  std::array<std::string, 256> byte_to_text;
  std::array<int16_t, 324> char_to_byte;  // code point -> byte, -1 if not in the alphabet
  ByteAlphabet();
};

const ByteAlphabet& byte_alphabet();

// Appends the bytes a ByteLevel token stands for; a token with a character outside the
// alphabet is taken as its own UTF-8 bytes (as `tokenizers` does).
void append_token_bytes(std::string_view tok, std::string& out);

}  // namespace mosaic::io::detail
