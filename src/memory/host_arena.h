#pragma once
// The CPU backend's arena: one aligned block that grows when a plan needs more. Tensors
// live at the plan's offsets inside it; nothing else is allocated during a step.
#include <cstddef>

namespace mosaic {

class HostArena {
 public:
  HostArena() = default;
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;
  ~HostArena();
  // Grows to at least `bytes`, keeping the first `keep` bytes (a plan's persistent tensors);
  // the rest of the contents is not kept: transients never carry data across steps.
  void reserve(size_t bytes, size_t keep = 0);
  std::byte* data() { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace mosaic
