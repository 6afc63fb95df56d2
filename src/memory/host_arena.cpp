#include "memory/host_arena.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace mosaic {

HostArena::~HostArena() { std::free(data_); }

void HostArena::reserve(size_t bytes, size_t keep) {
  if (bytes <= capacity_) return;
  constexpr size_t kAlign = 4096;
  size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
  std::byte* old = data_;
  data_ = static_cast<std::byte*>(std::aligned_alloc(kAlign, size));
  if (data_ && old && keep) std::memcpy(data_, old, std::min(keep, capacity_));
  std::free(old);
  if (!data_) {
    capacity_ = 0;
    MOSAIC_FAIL("out of host memory: the step's arena needs {:.2f} GiB; lower --memory-budget so the "
                "planner chunks more, or shorten the sequence",
                size / 1073741824.0);
  }
  capacity_ = size;
}

}  // namespace mosaic
