#pragma once
// Read-only access to .safetensors files: the file is mmap'd and tensors point into the
// mapping, so opening a multi-GB checkpoint costs no copy and pages load on first touch.
// The header is untrusted input: everything in it is checked before any pointer is formed.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace mosaic::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // Points into the mapped file. Only aligned as the writer aligned it: safetensors promises
  // nothing beyond the data section starting at 8+N, so read through memcpy or to_f32.
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // path of the file it lives in (for error messages)

  int64_t numel() const;
};

// Headers larger than this are rejected before parsing, as the reference implementation does.
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(std::string_view name) const;                 // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void unmap();

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes one tensor as a .safetensors file (what SafetensorsFile reads back, and any
// safetensors reader too). Throws with the path when the file cannot be written.
void write_safetensors(const std::string& path, const std::string& name, DType dtype,
                       const std::vector<int64_t>& shape, const void* data, size_t nbytes);

}  // namespace mosaic::io
