#pragma once
// Hugging Face `tokenizer.json` loader for the byte-level BPE family (GPT-2, Llama-3,
// LLaDA-8B, Qwen2 / Dream), written from the file format. pip's `tokenizers` is the
// oracle the tests compare against (tests/io/tokenizer_oracle.py).
//
// Supported:
//   model        BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges,
//                unk_token / fuse_unk; byte_fallback must be false
//   normalizer   null, NFC, Sequence of these
//   pre_tokenizer ByteLevel (add_prefix_space, use_regex with the GPT-2 pattern),
//                Split (Regex or String pattern, every behavior, invert),
//                Digits (individual_digits), Sequence of these
//   decoder      ByteLevel, Sequence of ByteLevel/Fuse, null (tokens joined by spaces)
//   post_processor read past: encode() never adds special tokens (see below)
//   added_tokens content/id/special/lstrip/rstrip/single_word/normalized
// Token ids must lie in [0, 2^24 - 1] (the tables are indexed by id).
// Anything else is refused at load with an error naming the file and the field.
//
// Regexes run on PCRE2 (UTF + UCP, JIT when available), with `\s`/`\S` spelled as Unicode
// White_Space and `\p{..}` general categories brought to Unicode 16.0, as in Oniguruma (which
// `tokenizers` uses); NFC uses Unicode 9.0 data, as `tokenizers` does.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mosaic::io {

class Tokenizer {
 public:
  // Loads `path` (a tokenizer.json). bos_id/eos_id come from tokenizer_config.json in the
  // same folder when it has bos_token/eos_token, else from common token names.
  // Throws mosaic::Error naming the file and the JSON field at fault.
  static Tokenizer load(const std::string& path);

  // Text -> ids, like `tokenizers`' encode(text, add_special_tokens=False): no BOS/EOS or
  // other post-processor tokens are ever added (the chat template / caller adds BOS).
  // parse_special=false treats special added tokens in `text` as plain text (like
  // `encode_special_tokens=True`); non-special added tokens are still matched.
  // `text` must be valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;

  // Ids -> text through the decoder; invalid UTF-8 becomes U+FFFD (as Rust's lossy
  // conversion). Ids unknown to the tokenizer are skipped, as `tokenizers` does.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  std::string token_text(int32_t id) const;        // raw token string as in the vocab; throws if unknown
  int32_t token_id(std::string_view token) const;  // -1 if absent (vocab or added tokens)
  size_t vocab_size() const;                       // max id + 1 over vocab and added tokens
  bool is_special(int32_t id) const;
  const std::string& path() const;

  std::optional<int32_t> bos_id, eos_id;

  struct Impl;

 private:
  Tokenizer() = default;  // only load() makes one; copies share the loaded data
  std::shared_ptr<const Impl> impl_;
};

}  // namespace mosaic::io
