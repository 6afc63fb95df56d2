#pragma once
// A model directory as one name -> tensor table, however the weights are split into files.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"

namespace mosaic::io {

class Checkpoint {
 public:
  // Looks, in order, for model.safetensors; model.safetensors.index.json and the shards its
  // weight_map names; else every *.safetensors file in `dir`.
  static Checkpoint open(const std::string& dir);

  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  // Throws naming the tensor and the directory if absent; if `expect_shape` is given, also
  // when the shapes differ, naming tensor, both shapes and the file.
  const TensorInfo& get(std::string_view name,
                        const std::vector<int64_t>* expect_shape = nullptr) const;
  std::vector<std::string> names() const;  // sorted
  size_t total_bytes() const;              // sum of tensor bytes
  const std::string& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  void add(SafetensorsFile f);

  std::string dir_;
  std::vector<SafetensorsFile> files_;
  // Points into files_[i].tensors(); vectors keep their buffers when moved, so moving a
  // Checkpoint keeps these valid.
  std::map<std::string, const TensorInfo*, std::less<>> by_name_;
};

}  // namespace mosaic::io
