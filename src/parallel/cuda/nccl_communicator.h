#pragma once
// The Communicator between GPUs of one host, through NCCL. libnccl is loaded when the first
// communicator is made (dlopen: mosaic runs without NCCL installed until a step asks for
// several GPUs); MOSAIC_NCCL_LIB names the file when it is not on the loader's path.
#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace mosaic::parallel {

class NcclCommunicator : public Communicator {
 public:
  // One communicator per device, in rank order (ncclCommInitAll). Each rank's collectives run
  // on its own stream, from its own host thread.
  static std::vector<std::unique_ptr<NcclCommunicator>> for_devices(const std::vector<int>& devices);
  // Whether libnccl can be loaded here; why not in *why.
  static bool available(std::string* why = nullptr);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  cudaStream_t stream() const { return stream_; }
  // Device buffers; grouped ncclSend/ncclRecv on this rank's stream, waited for before it returns.
  void all_to_all(const std::vector<const void*>& send, const std::vector<size_t>& send_bytes,
                  const std::vector<void*>& recv, const std::vector<size_t>& recv_bytes) override;
  // Asks every thread of this rank to stop: a collective in flight (or the next one) aborts the
  // communicator from its own thread (ncclCommAbort: NCCL calls on one communicator are not
  // made from two threads at once) and fails.
  void abort() override;

 private:
  NcclCommunicator(void* comm, int rank, int size, int device);
  void* comm_;  // ncclComm_t
  int rank_, size_, device_;
  void abort_here();  // on the thread that uses the communicator: ncclCommAbort, once
  cudaStream_t stream_ = nullptr;
  std::atomic<bool> abort_requested_{false};
  bool freed_ = false;  // the communicator was aborted (only the using thread and the destructor touch it)
};

}  // namespace mosaic::parallel
