#pragma once
// The collectives of one step split over several devices (issue 17: context parallelism), between
// the size() ranks of a group. LocalGroup's ranks are threads of one process (the CPU tests of the
// sharding and exchange schedule); NCCL's, GPUs of one host.
#include <cstddef>
#include <vector>

namespace mosaic::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank at once: this rank's send[j] (send_bytes[j] bytes) lands in rank j's recv[rank()],
  // which that rank sized recv_bytes[rank()]. Returns when this rank's recv buffers are filled
  // and its send buffers are free again.
  virtual void all_to_all(const std::vector<const void*>& send, const std::vector<size_t>& send_bytes,
                          const std::vector<void*>& recv, const std::vector<size_t>& recv_bytes) = 0;
  // Called when a rank failed outside a collective: every rank's collective in flight, and every
  // later one, fails instead of waiting for it forever. The group cannot be used again.
  virtual void abort() = 0;
};

}  // namespace mosaic::parallel
