#include "parallel/cuda/nccl_communicator.h"

#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <mutex>
#include <thread>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace mosaic::parallel {

namespace {

// The NCCL entry points mosaic calls, resolved from the loaded library.
struct Nccl {
  const char* (*get_error_string)(ncclResult_t) = nullptr;
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  ncclResult_t (*group_start)() = nullptr;
  ncclResult_t (*group_end)() = nullptr;
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  std::string error;  // why it could not be loaded
};

const Nccl& nccl() {
  static Nccl n;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("MOSAIC_NCCL_LIB");
    const std::string file = env && *env ? env : "libnccl.so.2";
    void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      n.error = fmt::format("NCCL could not be loaded from '{}' ({}); install NCCL or set MOSAIC_NCCL_LIB to its "
                            "libnccl.so.2", file, dlerror());
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && n.error.empty()) n.error = fmt::format("'{}' has no symbol {}", file, name);
    };
    sym(n.get_error_string, "ncclGetErrorString");
    sym(n.comm_init_all, "ncclCommInitAll");
    sym(n.comm_destroy, "ncclCommDestroy");
    sym(n.comm_abort, "ncclCommAbort");
    sym(n.group_start, "ncclGroupStart");
    sym(n.group_end, "ncclGroupEnd");
    sym(n.send, "ncclSend");
    sym(n.recv, "ncclRecv");
  });
  return n;
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) MOSAIC_FAIL("NCCL {}: {}", what, nccl().get_error_string(r));
}

}  // namespace

bool NcclCommunicator::available(std::string* why) {
  const Nccl& n = nccl();
  if (why) *why = n.error;
  return n.error.empty();
}

std::vector<std::unique_ptr<NcclCommunicator>> NcclCommunicator::for_devices(const std::vector<int>& devices) {
  std::string why;
  MOSAIC_CHECK(available(&why), "{}", why);
  MOSAIC_CHECK(!devices.empty(), "NCCL: no device given");
  // The buffers NCCL moves live in mosaic's arena, a CUDA virtual-memory mapping that only its
  // own device may access (memory/cuda/vmm_region.cpp): NCCL must not read them from a peer GPU
  // directly, but copy them through its own buffers. Read at ncclCommInitAll; a value the user
  // set is kept.
  setenv("NCCL_P2P_DIRECT_DISABLE", "1", 0);
  std::vector<ncclComm_t> comms(devices.size());
  check(nccl().comm_init_all(comms.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll");
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  size_t r = 0;
  try {
    for (; r < devices.size(); ++r)
      out.push_back(std::unique_ptr<NcclCommunicator>(
          new NcclCommunicator(comms[r], static_cast<int>(r), static_cast<int>(devices.size()), devices[r])));
  } catch (...) {
    for (; r < devices.size(); ++r) nccl().comm_destroy(comms[r]);  // the ones no communicator owns
    throw;
  }
  return out;
}

NcclCommunicator::NcclCommunicator(void* comm, int rank, int size, int device)
    : comm_(comm), rank_(rank), size_(size), device_(device) {
  int previous = 0;
  CUDA_CHECK(cudaGetDevice(&previous));
  CUDA_CHECK(cudaSetDevice(device_));
  const cudaError_t made = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  CUDA_CHECK(cudaSetDevice(previous));  // the caller's device is left as it was
  CUDA_CHECK(made);
}

NcclCommunicator::~NcclCommunicator() {
  if (stream_) cudaStreamDestroy(stream_);
  if (!freed_) {
    const auto comm = static_cast<ncclComm_t>(comm_);
    abort_requested_ ? nccl().comm_abort(comm) : nccl().comm_destroy(comm);
  }
}

void NcclCommunicator::abort() { abort_requested_ = true; }

void NcclCommunicator::abort_here() {
  if (freed_) return;
  freed_ = true;
  nccl().comm_abort(static_cast<ncclComm_t>(comm_));
}

void NcclCommunicator::all_to_all(const std::vector<const void*>& send, const std::vector<size_t>& send_bytes,
                                  const std::vector<void*>& recv, const std::vector<size_t>& recv_bytes) {
  const size_t n = static_cast<size_t>(size_);
  MOSAIC_CHECK(send.size() == n && send_bytes.size() == n && recv.size() == n && recv_bytes.size() == n,
               "all_to_all on rank {}: {} ranks, but {} send and {} recv buffers", rank_, n, send.size(), recv.size());
  if (abort_requested_) {
    abort_here();
    MOSAIC_FAIL("all_to_all on rank {}: the NCCL group was aborted (a rank failed)", rank_);
  }
  CUDA_CHECK(cudaSetDevice(device_));
  const Nccl& c = nccl();
  const auto comm = static_cast<ncclComm_t>(comm_);
  check(c.group_start(), "ncclGroupStart");
  try {
    for (size_t j = 0; j < n; ++j) {
      if (send_bytes[j] > 0)
        check(c.send(send[j], send_bytes[j], ncclUint8, static_cast<int>(j), comm, stream_), "ncclSend");
      if (recv_bytes[j] > 0)
        check(c.recv(recv[j], recv_bytes[j], ncclUint8, static_cast<int>(j), comm, stream_), "ncclRecv");
    }
  } catch (...) {
    c.group_end();  // close this thread's group before the error leaves
    throw;
  }
  check(c.group_end(), "ncclGroupEnd");
  // Waited for by polling, so that a rank that failed elsewhere (abort) does not leave this one
  // waiting for its bytes forever.
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) CUDA_CHECK(e);
    if (abort_requested_) {
      abort_here();
      MOSAIC_FAIL("all_to_all on rank {}: the NCCL group was aborted (a rank failed)", rank_);
    }
    std::this_thread::yield();
  }
}

}  // namespace mosaic::parallel
