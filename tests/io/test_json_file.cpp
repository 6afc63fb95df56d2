// The JSON files that come with a model are untrusted: io::parse_json refuses nesting past
// kMaxJsonFileDepth with the file's name. nlohmann parses iteratively, but copying and
// printing a value recurse: before the limit, a config.json nesting 100k levels deep
// overflowed the stack while printing its error message (issue 16).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/tokenizer.h"
#include "models/family.h"
#include "test_util.h"

namespace mosaic::test {
namespace {

namespace fs = std::filesystem;

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

void expect_deep_error(const std::string& msg, const fs::path& file) {
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("nests deeper than 64 levels"), std::string::npos) << msg;
}

TEST(JsonFiles, NestingIsLimited) {
  EXPECT_NO_THROW(io::parse_json(nested(io::kMaxJsonFileDepth - 1), "ok.json"));
  expect_deep_error(error_of([] { io::parse_json(nested(100000), "deep.json"); }), "deep.json");
  expect_deep_error(error_of([] { io::parse_json(std::string(100000, '['), "open.json"); }), "open.json");
  const std::string e = error_of([] { io::parse_json("{\"a\": ", "cut.json"); });
  EXPECT_NE(e.find("cut.json: not valid JSON"), std::string::npos) << e;
}

// config.json, tokenizer.json, tokenizer_config.json and the checkpoint index, each nesting
// 100k levels where a value is expected: a clear error naming the file, not a crash.
TEST(JsonFiles, DeepFilesOfAModelAreRefused) {
  const fs::path dir = scratch_dir("json_deep");
  const std::string deep = nested(100000);

  const fs::path config = dir / "config.json";
  write_file(config, "{\"model_type\": \"llada\", \"d_model\": " + deep + "}");
  expect_deep_error(error_of([&] { load_model_config(config.string()); }), config);

  const fs::path tok = dir / "tokenizer.json";
  write_file(tok, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": " + deep + "}, \"merges\": []}}");
  expect_deep_error(error_of([&] { io::Tokenizer::load(tok.string()); }), tok);

  write_file(tok, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
  const fs::path tok_config = dir / "tokenizer_config.json";
  write_file(tok_config, "{\"bos_token\": " + deep + "}");
  expect_deep_error(error_of([&] { io::Tokenizer::load(tok.string()); }), tok_config);

  const fs::path index = dir / "model.safetensors.index.json";
  write_file(index, "{\"weight_map\": " + deep + "}");
  expect_deep_error(error_of([&] { io::Checkpoint::open(dir.string()); }), index);
}

}  // namespace
}  // namespace mosaic::test
