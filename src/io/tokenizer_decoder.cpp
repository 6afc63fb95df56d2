#include "io/tokenizer_decoder.h"

#include <utility>

#include "io/tokenizer_byte_level.h"
#include "io/utf8.h"

namespace mosaic::io::detail {

std::string Decoder::decode(std::vector<std::string> toks) const {
  if (!present) {
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  for (DecoderStep d : steps) {
    std::string joined;
    if (d == DecoderStep::ByteLevel) {
      for (const auto& s : toks) append_token_bytes(s, joined);
      joined = utf8_lossy(joined);
    } else {
      for (const auto& s : toks) joined += s;
    }
    toks.assign(1, std::move(joined));
  }
  std::string out;
  for (const auto& s : toks) out += s;
  return out;
}

}  // namespace mosaic::io::detail
