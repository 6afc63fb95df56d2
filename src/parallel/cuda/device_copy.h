#pragma once
// A LocalGroup's copy between device buffers (ranks that share a GPU, where NCCL refuses a
// device twice): cudaMemcpy, waited for, since a rank reads the bytes as soon as it returns.
#include <cstddef>

namespace mosaic::parallel {

void device_copy(void* dst, const void* src, size_t bytes);

}  // namespace mosaic::parallel
