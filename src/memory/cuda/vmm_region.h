#pragma once
// A range of device virtual addresses, reserved once, backed by physical memory mapped in
// granularity-sized pieces (2 MiB on H100) as it grows and unmapped as it shrinks. The
// arena is one of these: pointers stay valid while it grows, and nothing fragments
// because the planner, not an allocator, decides where tensors live.
#include <cuda.h>

#include <cstddef>
#include <vector>

namespace mosaic {

class VmmRegion {
 public:
  VmmRegion(int device, size_t reserve_bytes, const char* what);
  VmmRegion(const VmmRegion&) = delete;
  VmmRegion& operator=(const VmmRegion&) = delete;
  ~VmmRegion();

  // Maps or unmaps so that at least `bytes` are mapped; shrinking releases trailing pieces
  // only when more than `slack` bytes would stay mapped beyond `bytes`.
  void resize(size_t bytes, size_t slack = 0);
  std::byte* base() const { return reinterpret_cast<std::byte*>(base_); }
  size_t mapped() const { return mapped_; }
  size_t reserved() const { return reserved_; }
  size_t granularity() const { return gran_; }

 private:
  struct Piece {
    CUmemGenericAllocationHandle handle;
    size_t size;
  };
  int device_;
  const char* what_;
  CUdeviceptr base_ = 0;
  size_t reserved_ = 0, gran_ = 0, mapped_ = 0;
  std::vector<Piece> pieces_;  // mapped back to back from base_
};

}  // namespace mosaic
