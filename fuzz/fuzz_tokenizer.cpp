// libFuzzer target: the tokenizer. The first byte says what the rest is (byte % 4):
//   0     a tokenizer.json: Tokenizer::load throws mosaic::Error or loads one, which then
//         encodes a fixed text (through whatever pipeline the file set up) and decodes it:
//         every id it gives must be inside its vocabulary.
//   1, 2  text for one of the fixtures' real tokenizers (byte / 4 picks which), encoded with
//         parse_special = true / false: throws mosaic::Error exactly when the text is not
//         valid UTF-8; else every id is in the vocabulary and decoding gives the text back
//         (they are byte-level BPE without a normalizer or prefix space: lossless).
//   3     int32 ids (any value: negative, past the vocabulary) for such a tokenizer to decode:
//         never throws, and the text is valid UTF-8 (invalid bytes become U+FFFD).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/tokenizer.h"

namespace {

using mosaic::io::Tokenizer;

#define FUZZ_CHECK(cond)                                                 \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "fuzz_tokenizer: check failed: %s\n", #cond); \
      std::abort();                                                      \
    }                                                                    \
  } while (0)

// Well-formed UTF-8 (RFC 3629's table), written here apart from io/utf8.cpp.
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0, n = s.size(); i < n;) {
    const unsigned c = p[i];
    size_t len = 1;
    unsigned lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else if (c >= 0x80) return false;
    if (len > 1 && (n - i < len || p[i + 1] < lo || p[i + 1] > hi)) return false;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    i += len;
  }
  return true;
}

const std::vector<Tokenizer>& fixtures() {
  static const std::vector<Tokenizer> t = [] {
    const std::filesystem::path src(MOSAIC_SOURCE_DIR);
    std::vector<Tokenizer> v;
    for (const char* p : {"tests/fixtures/llada_tiny/tokenizer.json", "tests/fixtures/llada2_tiny/tokenizer.json",
                          "models/mosaic-tiny/tokenizer.json"})
      v.push_back(Tokenizer::load((src / p).string()));
    return v;
  }();
  return t;
}

void ids_in_vocabulary(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size());
}

void load(std::string_view bytes) {
  // A folder of its own: no tokenizer_config.json beside the file.
  static const std::string dir = "/dev/shm/mosaic_fuzz_tokenizer_" + std::to_string(getpid());
  static const std::string path = dir + "/tokenizer.json";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    const Tokenizer tok = Tokenizer::load(path);
    for (bool special : {true, false}) {
      const auto ids = tok.encode("Hello, world! 12345 <|endoftext|>  caf\xC3\xA9\n\xE4\xB8\xAD", special);
      ids_in_vocabulary(tok, ids);
      FUZZ_CHECK(valid_utf8(tok.decode(ids)));
    }
  } catch (const mosaic::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const int mode = data[0] % 4;
  if (mode == 0) {
    load(rest);
    return 0;
  }
  const Tokenizer& tok = fixtures()[data[0] / 4 % fixtures().size()];
  if (mode == 3) {
    std::vector<int32_t> ids(rest.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    FUZZ_CHECK(valid_utf8(tok.decode(ids)));
    FUZZ_CHECK(valid_utf8(tok.decode(ids, /*skip_special=*/true)));
    return 0;
  }
  const bool valid = valid_utf8(rest);
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(rest, /*parse_special=*/mode == 1);
  } catch (const mosaic::Error&) {
    FUZZ_CHECK(!valid);
    return 0;
  }
  FUZZ_CHECK(valid);
  ids_in_vocabulary(tok, ids);
  FUZZ_CHECK(tok.decode(ids) == rest);
  return 0;
}
