#pragma once
// N ranks in one process, one thread each: the Communicator the CPU runs and tests use in place
// of NCCL. A collective waits until every rank has entered it.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace mosaic::parallel {

class LocalGroup {
 public:
  // How a rank's bytes reach another's: memcpy for host buffers; a GPU test passes a
  // cudaMemcpy (ranks that share one device). The bytes must have landed when it returns; it
  // may throw (every rank's collective then fails).
  using CopyFn = void (*)(void* dst, const void* src, size_t bytes);
  explicit LocalGroup(int size, CopyFn copy = nullptr);
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const { return static_cast<int>(ranks_.size()); }
  Communicator& rank(int r);

 private:
  class Rank;
  struct Posted {  // one rank's side of the collective in flight
    std::vector<const void*> send;
    std::vector<size_t> send_bytes;
    bool ok = false;  // the rank's arguments matched the group
  };
  void barrier();  // throws once the group was aborted
  void abort();

  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<Posted> posted_;
  std::vector<std::string> errors_;  // per rank, the collective in flight's error ("": none)
  CopyFn copy_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
  bool aborted_ = false;
};

}  // namespace mosaic::parallel
