#pragma once
// Reading the JSON files that come with a model (config.json, tokenizer.json,
// tokenizer_config.json, the checkpoint index): untrusted input. nlohmann parses iteratively,
// but copying or printing a value recurses once per level, so a file nesting 100k levels
// deep would overflow the stack at the first error message. Real files nest a few levels;
// these refuse anything past kMaxJsonFileDepth.
#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace mosaic::io {

inline constexpr int kMaxJsonFileDepth = 64;

// Parses `text`, the contents of `path`. Throws mosaic::Error naming `path` on a syntax error
// or on nesting deeper than kMaxJsonFileDepth.
nlohmann::json parse_json(std::string_view text, const std::string& path);

// Reads and parses the file at `path`; `what` names it in the error when it cannot be opened
// ("model config", "tokenizer.json", ...).
nlohmann::json read_json_file(const std::string& path, const std::string& what);

}  // namespace mosaic::io
