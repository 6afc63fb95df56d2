#include "io/json_file.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace mosaic::io {

using json = nlohmann::json;

json parse_json(std::string_view text, const std::string& path) {
  try {
    return json::parse(text.begin(), text.end(), [&](int depth, json::parse_event_t, json&) {
      MOSAIC_CHECK(depth <= kMaxJsonFileDepth, "{}: the JSON nests deeper than {} levels (real files nest a few)",
                   path, kMaxJsonFileDepth);
      return true;
    });
  } catch (const json::exception& e) {
    MOSAIC_FAIL("{}: not valid JSON: {}", path, e.what());
  }
}

json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  MOSAIC_CHECK(f.good(), "cannot open {} '{}'", what, path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_json(ss.str(), path);
}

}  // namespace mosaic::io
