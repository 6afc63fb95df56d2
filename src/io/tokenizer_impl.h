#pragma once
// Tokenizer::Impl: a loaded tokenizer.json, filled by tokenizer_load.cpp and run by the
// facade in tokenizer.cpp. Each part of the pipeline lives in its own tokenizer_*.h.
#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "io/tokenizer_added_tokens.h"
#include "io/tokenizer_bpe.h"
#include "io/tokenizer_decoder.h"
#include "io/tokenizer_pretokenizer.h"

namespace mosaic::io {

struct Tokenizer::Impl {
  std::string path;
  detail::BpeModel model;
  // every token by id: the vocab and the added tokens
  std::vector<std::string> id_to_text;
  std::vector<uint8_t> has_id, special;
  detail::AddedTokens added;
  // pipeline
  bool nfc = false;  // the normalizer (NFC or none)
  detail::PreTokenizer pre_tokenizer;
  detail::Decoder decoder;
};

}  // namespace mosaic::io
