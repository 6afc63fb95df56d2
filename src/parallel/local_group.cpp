#include "parallel/local_group.h"

#include <cstring>

#include "core/error.h"

namespace mosaic::parallel {

class LocalGroup::Rank : public Communicator {
 public:
  Rank(LocalGroup& g, int r) : g_(g), r_(r) {}
  int rank() const override { return r_; }
  int size() const override { return g_.size(); }

  void all_to_all(const std::vector<const void*>& send, const std::vector<size_t>& send_bytes,
                  const std::vector<void*>& recv, const std::vector<size_t>& recv_bytes) override {
    // A rank with wrong arguments still takes part in both barriers (the others would wait for
    // it forever), and every rank then fails.
    const size_t n = static_cast<size_t>(size());
    const bool ok = send.size() == n && send_bytes.size() == n && recv.size() == n && recv_bytes.size() == n;
    g_.posted_[static_cast<size_t>(r_)] = ok ? Posted{send, send_bytes, true} : Posted{};
    g_.barrier();  // every rank's send buffers are posted
    std::string error;
    if (!ok)
      error = fmt::format("all_to_all on rank {}: {} ranks, but {} send and {} recv buffers", r_, n, send.size(),
                          recv.size());
    for (size_t i = 0; i < n && ok; ++i) {
      const Posted& from = g_.posted_[i];
      if (!from.ok) {
        error = fmt::format("all_to_all: rank {} gave wrong buffers", i);
        continue;
      }
      const size_t bytes = from.send_bytes[static_cast<size_t>(r_)];
      if (bytes != recv_bytes[i]) {
        error = fmt::format("all_to_all: rank {} sends {} B to rank {}, which expects {} B", i, bytes, r_,
                            recv_bytes[i]);
        continue;
      }
      try {
        if (bytes > 0) g_.copy_(recv[i], from.send[static_cast<size_t>(r_)], bytes);
      } catch (const std::exception& e) {
        error = fmt::format("all_to_all: copying rank {}'s bytes to rank {}: {}", i, r_, e.what());
      }
    }
    g_.errors_[static_cast<size_t>(r_)] = error;
    g_.barrier();  // every rank has read what it needed (send buffers are free) and said how it went
    // Every rank fails when one did: a rank that went on would wait for the others in its next
    // collective forever.
    if (!error.empty()) MOSAIC_FAIL("{}", error);
    for (size_t i = 0; i < n; ++i)
      MOSAIC_CHECK(g_.errors_[i].empty(), "all_to_all failed on rank {}: {}", i, g_.errors_[i]);
  }
  void abort() override { g_.abort(); }

 private:
  LocalGroup& g_;
  int r_;
};

namespace {
void host_copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
}  // namespace

LocalGroup::LocalGroup(int size, CopyFn copy) : copy_(copy ? copy : host_copy) {
  MOSAIC_CHECK(size >= 1, "a group of {} ranks", size);
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
  posted_.resize(static_cast<size_t>(size));
  errors_.resize(static_cast<size_t>(size));
}

LocalGroup::~LocalGroup() = default;

Communicator& LocalGroup::rank(int r) {
  MOSAIC_CHECK(r >= 0 && r < size(), "rank {} of a group of {}", r, size());
  return *ranks_[static_cast<size_t>(r)];
}

void LocalGroup::barrier() {
  std::unique_lock<std::mutex> lock(mu_);
  MOSAIC_CHECK(!aborted_, "a collective of an aborted group (a rank failed)");
  const long gen = generation_;
  if (++arrived_ == size()) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != gen || aborted_; });
  MOSAIC_CHECK(generation_ != gen, "a collective of an aborted group (a rank failed)");
}

void LocalGroup::abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  cv_.notify_all();
}

}  // namespace mosaic::parallel
