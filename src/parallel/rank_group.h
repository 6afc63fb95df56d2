#pragma once
// The communicators of a step sharded across ranks, for a backend by name: NCCL between the
// ranks' CUDA devices ("cuda", "cuda-fp32"), a LocalGroup copying device memory when every rank
// is on the same GPU (NCCL takes a device once: for testing on one GPU), or a LocalGroup
// copying host memory ("cpu": ranks as threads of this process, a stand-in for GPUs in tests).
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace mosaic::parallel {

class RankGroup {
 public:
  virtual ~RankGroup() = default;
  // Throws a clear error when the backend has no way to connect n ranks here (no NCCL, fewer GPUs).
  // devices[r]: rank r's CUDA device (ignored for "cpu", where only the count matters).
  static std::unique_ptr<RankGroup> make(const std::string& backend, const std::vector<int>& devices);
  // Rank r's communicator at [r].
  virtual std::vector<Communicator*> comms() = 0;
  virtual std::string describe() const = 0;  // "8 GPUs (NCCL)", "4 CPU ranks (threads)", "2 ranks sharing GPU 0 (device copies)"
};

}  // namespace mosaic::parallel
