#include "io/checkpoint.h"

#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/json_file.h"

namespace mosaic::io {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// The index is as untrusted as the headers: a shard name must not walk out of the directory.
void check_shard_name(const std::string& shard, const std::string& index) {
  MOSAIC_CHECK(!shard.empty() && shard != "." && shard != ".." &&
                   shard.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos,
               "{}: shard file name '{}' must be a plain file name in the same directory", index,
               shard);
}


}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  std::error_code ec;
  MOSAIC_CHECK(fs::is_directory(dir, ec), "{}: not a directory (expected a model directory)", dir);
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";

  if (fs::exists(single, ec)) {
    c.add(SafetensorsFile::open(single.string()));
  } else if (fs::exists(index, ec)) {
    const std::string idx = index.string();
    const json j = read_json_file(idx, "checkpoint index");
    MOSAIC_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 "{}: missing 'weight_map' object", idx);
    const json& wm = j["weight_map"];
    MOSAIC_CHECK(!wm.empty(), "{}: 'weight_map' lists no tensors", idx);
    std::set<std::string> shards;
    for (const auto& [name, shard] : wm.items()) {
      MOSAIC_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a file name string", idx, name);
      check_shard_name(shard.get<std::string>(), idx);
      shards.insert(shard.get<std::string>());
    }
    for (const std::string& s : shards) {
      const fs::path p = fs::path(dir) / s;
      MOSAIC_CHECK(fs::is_regular_file(p, ec), "{}: shard '{}' listed in the index is missing ({})",
                   idx, s, p.string());
      c.add(SafetensorsFile::open(p.string()));
    }
    for (const auto& [name, shard] : wm.items()) {
      const TensorInfo* t = c.find(name);
      const std::string want = (fs::path(dir) / shard.get<std::string>()).string();
      MOSAIC_CHECK(t && t->file == want, "{}: index maps '{}' to shard '{}', which has no such tensor",
                   idx, name, shard.get<std::string>());
    }
  } else {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path().string());
    MOSAIC_CHECK(!found.empty(),
                 "{}: no model.safetensors, model.safetensors.index.json or *.safetensors file",
                 dir);
    std::sort(found.begin(), found.end());  // deterministic order for messages
    for (const std::string& f : found) c.add(SafetensorsFile::open(f));
  }
  return c;
}

void Checkpoint::add(SafetensorsFile f) {
  files_.push_back(std::move(f));
  for (const TensorInfo& t : files_.back().tensors()) {
    auto [it, fresh] = by_name_.emplace(t.name, &t);
    MOSAIC_CHECK(fresh, "{}: tensor '{}' appears in both {} and {}", dir_, t.name, it->second->file,
                 t.file);
  }
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(std::string_view name,
                                  const std::vector<int64_t>* expect_shape) const {
  const TensorInfo* t = find(name);
  MOSAIC_CHECK(t, "{}: tensor '{}' not found in the checkpoint ({} tensors)", dir_, name,
               by_name_.size());
  MOSAIC_CHECK(!expect_shape || *expect_shape == t->shape,
               "{}: tensor '{}' has shape {}, expected {}", t->file, name, shape_str(t->shape),
               shape_str(*expect_shape));
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [n, t] : by_name_) out.push_back(n);
  return out;
}

size_t Checkpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : by_name_) n += t->nbytes;
  return n;
}

}  // namespace mosaic::io
