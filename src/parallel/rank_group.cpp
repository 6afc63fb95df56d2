#include "parallel/rank_group.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "backend/backend.h"
#include "core/error.h"
#include "parallel/local_group.h"
#ifdef MOSAIC_CUDA
#include "parallel/cuda/device_copy.h"
#endif
#ifdef MOSAIC_NCCL
#include "parallel/cuda/nccl_communicator.h"
#endif

namespace mosaic::parallel {

namespace {

class InProcessRanks : public RankGroup {
 public:
  InProcessRanks(int n, LocalGroup::CopyFn copy, std::string what) : group_(n, copy), what_(std::move(what)) {}
  std::vector<Communicator*> comms() override {
    std::vector<Communicator*> c;
    for (int r = 0; r < group_.size(); ++r) c.push_back(&group_.rank(r));
    return c;
  }
  std::string describe() const override { return what_; }

 private:
  LocalGroup group_;
  std::string what_;
};

#ifdef MOSAIC_NCCL
class NcclRanks : public RankGroup {
 public:
  explicit NcclRanks(const std::vector<int>& devices) : comms_(NcclCommunicator::for_devices(devices)) {}
  std::vector<Communicator*> comms() override {
    std::vector<Communicator*> c;
    for (auto& x : comms_) c.push_back(x.get());
    return c;
  }
  std::string describe() const override { return fmt::format("{} GPUs (NCCL)", comms_.size()); }

 private:
  std::vector<std::unique_ptr<NcclCommunicator>> comms_;
};
#endif

}  // namespace

std::unique_ptr<RankGroup> RankGroup::make(const std::string& backend, const std::vector<int>& devices) {
  const int n = static_cast<int>(devices.size());
  MOSAIC_CHECK(n >= 1, "{} ranks: give 1 or more", n);
  if (backend == "cpu") return std::make_unique<InProcessRanks>(n, nullptr, fmt::format("{} CPU ranks (threads)", n));
  MOSAIC_CHECK(backend == "cuda" || backend == "cuda-fp32", "unknown backend '{}'", backend);
  const int count = cuda_device_count();
  bool in_order = true;  // devices 0..n-1, as --gpus n alone asks
  for (int r = 0; r < n; ++r) in_order = in_order && devices[static_cast<size_t>(r)] == r;
  const std::string flag = in_order ? fmt::format("--gpus {}", n) : fmt::format("--devices {}", fmt::join(devices, ","));
  for (int d : devices)
    MOSAIC_CHECK(d >= 0 && d < count, "{}: this machine has {} CUDA device{}{}", flag, count, count == 1 ? "" : "s",
                 in_order || count == 0 ? "" : " (numbered from 0)");
  std::vector<int> sorted = devices;
  std::sort(sorted.begin(), sorted.end());
  if (n > 1 && sorted.front() == sorted.back()) {
#ifdef MOSAIC_CUDA
    // NCCL takes a device once: ranks sharing one GPU copy between their arenas, which that GPU
    // maps (an arena is mapped for its own device only, so ranks on different GPUs cannot).
    return std::make_unique<InProcessRanks>(n, device_copy,
                                            fmt::format("{} ranks sharing GPU {} (device copies)", n, devices[0]));
#endif
  }
  MOSAIC_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
               "--devices {}: ranks share a GPU only when all of them do (NCCL takes each GPU once)",
               fmt::join(devices, ","));
#ifdef MOSAIC_NCCL
  std::string why;
  MOSAIC_CHECK(NcclCommunicator::available(&why), "{}: {}", flag, why);
  return std::make_unique<NcclRanks>(devices);
#else
  MOSAIC_FAIL("{}: this mosaic was built without NCCL (nccl.h was not found at build time)", flag);
#endif
}

}  // namespace mosaic::parallel
