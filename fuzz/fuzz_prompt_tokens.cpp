// libFuzzer target: the `--prompt-tokens` parser. The first byte picks the vocabulary size
// (1, 400, 126464, or 2^40, past int32); the rest is the flag's text. parse_token_list must
// throw mosaic::Error with a short message (it quotes one entry, never the whole list) or
// return one id per comma-separated entry, each inside the vocabulary, that print back to a
// list parsing to the same ids.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/token_list.h"

#define FUZZ_CHECK(cond)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "fuzz_prompt_tokens: check failed: %s\n", #cond); \
      std::abort();                                                           \
    }                                                                         \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr int64_t kVocab[] = {1, 400, 126464, int64_t{1} << 40};
  const int64_t vocab = kVocab[data[0] % 4];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<int32_t> ids;
  try {
    ids = mosaic::io::parse_token_list(text, vocab);
  } catch (const mosaic::Error& e) {
    FUZZ_CHECK(std::strlen(e.what()) < 200);
    return 0;
  }
  FUZZ_CHECK(ids.size() == static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1);
  std::string back;
  for (int32_t id : ids) {
    FUZZ_CHECK(id >= 0 && id < vocab);
    back += (back.empty() ? "" : ",") + std::to_string(id);
  }
  FUZZ_CHECK(mosaic::io::parse_token_list(back, vocab) == ids);
  return 0;
}
