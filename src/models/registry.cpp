// The model families, one line each: a new family adds its file and a line here.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "models/family.h"

namespace mosaic {

const ModelFamily& llada_family();
const ModelFamily& dream_family();
const ModelFamily& llada2_family();
const ModelFamily& llada_moe_family();

const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> all = {
      &llada_family(),
      &dream_family(),
      &llada2_family(),
      &llada_moe_family(),
  };
  return all;
}

namespace {

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string known_types() {
  std::string s;
  for (const ModelFamily* f : model_families())
    for (const std::string& t : f->model_types()) s += (s.empty() ? "" : ", ") + t;
  return s;
}

}  // namespace

const ModelFamily& family_of(const io::ModelConfig& c) {
  for (const ModelFamily* f : model_families())
    if (f->name() == c.family) return *f;
  MOSAIC_FAIL("{}: no model family '{}' (known: {})", c.source, c.family, known_types());
}

io::ModelConfig parse_model_config(const nlohmann::json& j, const std::string& src) {
  MOSAIC_CHECK(j.is_object(), "{}: expected a JSON object", src);
  io::ConfigFields fields(j, src);
  const std::string mt = fields.string("model_type").value_or("");
  MOSAIC_CHECK(!mt.empty(), "{}: field 'model_type' is missing; supported: {}", src, known_types());
  // An architecture a family claims picks it first; then the model_type.
  const ModelFamily* by_arch = nullptr;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array())
    for (const auto& name : *a)
      for (const ModelFamily* f : model_families()) {
        const auto archs = f->architectures();
        if (name.is_string() && std::find(archs.begin(), archs.end(), name.get<std::string>()) != archs.end())
          by_arch = f;
      }
  for (const ModelFamily* f : model_families()) {
    const auto types = f->model_types();
    if (by_arch ? f != by_arch : std::find(types.begin(), types.end(), lower(mt)) == types.end()) continue;
    io::ModelConfig c = f->parse_config(fields);
    c.family = f->name();
    c.model_type = mt;
    c.source = src;
    c.raw = std::make_shared<const nlohmann::json>(j);
    io::check_model_config(c);
    return c;
  }
  MOSAIC_FAIL("{}: unknown model_type '{}'; supported: {}", src, mt, known_types());
}

io::ModelConfig load_model_config(const std::string& path) {
  MOSAIC_CHECK(std::filesystem::is_regular_file(path),
               "cannot open model config '{}': no such file (a model directory needs a config.json)", path);
  return parse_model_config(io::read_json_file(path, "model config"), path);
}

Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o) {
  return family_of(c).build_step_graph(c, o);
}

}  // namespace mosaic
