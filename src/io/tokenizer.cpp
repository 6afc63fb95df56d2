// Byte-level BPE from a Hugging Face tokenizer.json; see tokenizer.h for what is supported.
//
// encode(): text -> split on added tokens (leftmost-longest; lstrip/rstrip/single_word) ->
// normalize the pieces (NFC) -> split on added tokens that match normalized text ->
// pre-tokenizer steps (Split / Digits / ByteLevel) -> BPE per pre-token (merge loop by rank,
// with a cache) -> ids. The semantics follow the `tokenizers` crate, which the tests use
// as the oracle.
//
// This file is the facade over the parts: tokenizer_load.cpp (reading the file),
// tokenizer_added_tokens, unicode_nfc, tokenizer_pretokenizer, tokenizer_bpe and
// tokenizer_decoder (one pipeline stage each).
#include "io/tokenizer.h"

#include <utility>

#include "core/error.h"
#include "io/tokenizer_impl.h"
#include "io/unicode_nfc.h"
#include "io/utf8.h"

namespace mosaic::io {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const Impl& t = *impl_;
  for (size_t i = 0; i < text.size();) {
    size_t bad;
    size_t n = detail::utf8_valid_at(text, i, bad);
    MOSAIC_CHECK(n > 0, "tokenizer: the text to encode is not valid UTF-8 (byte {} of {})", i, text.size());
    i += n;
  }
  std::vector<int32_t> ids;
  std::vector<std::string> words;
  auto encode_text = [&](std::string_view piece) {
    words.clear();
    t.pre_tokenizer.pre_tokenize(piece, words);
    for (const auto& w : words) t.model.encode_word(w, ids);
  };
  t.added.split(text, t.added.raw_trie, parse_special, [&](std::string_view piece, int tok) {
    if (tok >= 0) {
      ids.push_back(t.added.tokens[tok].id);
      return;
    }
    std::string normalized;
    if (t.nfc) normalized = detail::nfc(piece);
    std::string_view norm = t.nfc ? std::string_view(normalized) : piece;
    t.added.split(norm, t.added.normalized_trie, parse_special, [&](std::string_view p2, int tok2) {
      if (tok2 >= 0)
        ids.push_back(t.added.tokens[tok2].id);
      else
        encode_text(p2);
    });
  });
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.id_to_text.size() || !t.has_id[id]) continue;
    if (skip_special && t.special[id]) continue;
    toks.push_back(t.id_to_text[id]);
  }
  return t.decoder.decode(std::move(toks));
}

std::string Tokenizer::token_text(int32_t id) const {
  const Impl& t = *impl_;
  MOSAIC_CHECK(id >= 0 && static_cast<size_t>(id) < t.id_to_text.size() && t.has_id[id],
               "{}: token id {} is not in the vocabulary (size {})", t.path, id, t.id_to_text.size());
  return t.id_to_text[id];
}

int32_t Tokenizer::token_id(std::string_view token) const {
  const Impl& t = *impl_;
  if (auto it = t.added.by_content.find(token); it != t.added.by_content.end()) return it->second;
  if (auto it = t.model.vocab.find(token); it != t.model.vocab.end()) return it->second;
  return -1;
}

size_t Tokenizer::vocab_size() const { return impl_->id_to_text.size(); }

bool Tokenizer::is_special(int32_t id) const {
  const Impl& t = *impl_;
  return id >= 0 && static_cast<size_t>(id) < t.special.size() && t.special[id];
}

const std::string& Tokenizer::path() const { return impl_->path; }

}  // namespace mosaic::io
