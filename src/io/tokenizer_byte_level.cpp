#include "io/tokenizer_byte_level.h"

#include "io/utf8.h"

namespace mosaic::io::detail {

ByteAlphabet::ByteAlphabet() {
  char_to_byte.fill(-1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
    utf8_append(byte_to_text[b], cp);
    char_to_byte[cp] = static_cast<int16_t>(b);
  }
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

void append_token_bytes(std::string_view tok, std::string& out) {
  const auto& A = byte_alphabet();
  size_t mark = out.size();
  for (size_t i = 0; i < tok.size();) {
    char32_t cp = utf8_next(tok, i);
    if (cp >= A.char_to_byte.size() || A.char_to_byte[cp] < 0) {
      out.resize(mark);
      out.append(tok);
      return;
    }
    out += static_cast<char>(A.char_to_byte[cp]);
  }
}

}  // namespace mosaic::io::detail
