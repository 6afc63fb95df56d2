#pragma once
// `--prompt-tokens 1,2,3`: a prompt given as token ids.
#include <cstdint>
#include <string_view>
#include <vector>

namespace mosaic::io {

// Comma-separated decimal ids, each in [0, vocab_size); spaces and tabs around an entry are
// ignored. Throws mosaic::Error for an empty list or entry, a non-integer entry, or an id
// outside the vocabulary; the message quotes the entry at fault (cut to a few dozen
// characters: the list itself may be megabytes long), never the whole list.
std::vector<int32_t> parse_token_list(std::string_view text, int64_t vocab_size);

}  // namespace mosaic::io
