#pragma once
// The decoder: token strings -> text (tokenizer.json's `decoder`).
#include <string>
#include <vector>

namespace mosaic::io::detail {

enum class DecoderStep {
  ByteLevel,  // ByteLevel alphabet -> bytes, then lossy UTF-8
  Fuse,       // concatenation
};

struct Decoder {
  bool present = false;  // no decoder: tokens are joined by spaces, as `tokenizers` does
  std::vector<DecoderStep> steps;

  std::string decode(std::vector<std::string> tokens) const;
};

}  // namespace mosaic::io::detail
