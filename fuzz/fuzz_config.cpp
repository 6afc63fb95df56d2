// libFuzzer target: config.json of every model family, read as mosaic reads the file
// (io::parse_json: syntax errors and nesting past kMaxJsonFileDepth are mosaic::Error naming
// the file). parse_model_config must either throw mosaic::Error (naming the file and field)
// or return a config the shared checks accept. The parameter count is computed too.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "io/json_file.h"
#include "models/family.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const nlohmann::json j = mosaic::io::parse_json(text, "fuzz.json");
    const mosaic::io::ModelConfig c = mosaic::parse_model_config(j, "fuzz.json");
    volatile int64_t n = c.n_params();
    (void)n;
  } catch (const mosaic::Error&) {
  }
  return 0;
}
