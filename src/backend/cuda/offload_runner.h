#pragma once
// The CUDA side of an expert offload (offload/): the routed experts' master copies in pinned host
// memory, the copies of promoted experts into their GPU slots on a copy stream, and an offloaded
// MoE layer: the resident experts on the device (the grouped kernels, or the per-expert form),
// the rest on the CPU from the host copies while the device works, their rows added back. The
// copies either hold the layer up or run behind it, waited for at the layer's next step.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"

namespace mosaic::cuda {

class OffloadRunner {
 public:
  OffloadRunner(cudaStream_t compute, bool f32);
  ~OffloadRunner();
  OffloadRunner(const OffloadRunner&) = delete;
  OffloadRunner& operator=(const OffloadRunner&) = delete;

  // Waits for every expert copy sent so far (those behind a step included).
  void synchronize();

  // Pinned host memory for a master copy (from a pool of large pinned chunks).
  void* host_alloc(size_t bytes);
  size_t host_bytes() const { return host_bytes_; }

  // The device part runs through `device_part(ids, table)`: ids with the CPU's pairs set to -1
  // (device memory) and the slot-pointer table (3E device pointers, gate/up/down blocks), for the
  // grouped kernels; per_expert_part() instead for the fp32 mode's per-expert path.
  using GroupedPart = std::function<void(const int32_t* ids, const bf16* const* table)>;
  using PerExpertPart = std::function<void()>;
  void run(const void* h, int64_t rows, int64_t d, int top_k, int64_t ffn, const OffloadedExperts& o, void* x,
           const GroupedPart& grouped, const PerExpertPart& per_expert);

 private:
  cudaStream_t stream_, copy_;
  bool f32_;
  cudaEvent_t before_copy_ = nullptr, copied_ = nullptr, h_ready_ = nullptr;
  // Per layer: the copies sent behind its last refresh.
  std::map<int, cudaEvent_t> landed_;
  cudaEvent_t landed_event(int layer);
  std::vector<std::byte*> pool_;
  size_t pool_left_ = 0, host_bytes_ = 0;
  std::byte* pool_top_ = nullptr;
  // Staging, grown to the largest layer seen: pinned host (h, the CPU's sum, masked ids, table)
  // and device (the CPU's sum, masked ids, table).
  void* h_host_ = nullptr;
  float* y_host_ = nullptr;
  int32_t* ids_host_ = nullptr;
  const void** table_host_ = nullptr;
  float* y_dev_ = nullptr;
  int32_t* ids_dev_ = nullptr;
  const bf16** table_dev_ = nullptr;
  size_t h_cap_ = 0, y_cap_ = 0, ids_cap_ = 0, table_cap_ = 0;
  size_t y_dev_cap_ = 0, ids_dev_cap_ = 0, table_dev_cap_ = 0;
};

}  // namespace mosaic::cuda
