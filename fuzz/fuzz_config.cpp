// libFuzzer target: config.json of every model family. parse_model_config must either throw
// mosaic::Error (naming the file and field) or return a config the shared checks accept; JSON
// syntax errors are nlohmann's and are not under test. The parameter count is computed too.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "models/family.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    const mosaic::io::ModelConfig c = mosaic::parse_model_config(j, "fuzz.json");
    volatile int64_t n = c.n_params();
    (void)n;
  } catch (const mosaic::Error&) {
  }
  return 0;
}
