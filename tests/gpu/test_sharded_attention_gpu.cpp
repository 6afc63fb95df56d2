// The all-to-all attention's schedule on the GPU (issue 17): ranks as threads sharing this one
// device through a LocalGroup that copies with cudaMemcpy, and the same through NCCL with one
// rank (the one GPU lent). Each rank's rows equal one device's attention on the whole sequence.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <exception>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "gpu/bf16_buffers.h"
#include "parallel/cuda/all_to_all_attention_cuda.h"
#include "parallel/local_group.h"
#include "parallel/sequence_shards.h"
#if defined(MOSAIC_NCCL)
#include "parallel/cuda/nccl_communicator.h"
#endif

namespace mosaic::parallel {
namespace {

using test::DevBuf;
using test::HostBf16;

std::mt19937 rng(20261204);

// A device-to-device cudaMemcpy may return before the bytes land: LocalGroup needs them landed.
void device_copy(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  CUDA_CHECK(cudaDeviceSynchronize());
}

struct Case {
  int64_t rows = 301;
  int heads = 8, kv_heads = 4, hd = 128;
  float scale() const { return 1.f / std::sqrt(static_cast<float>(hd)); }
  int64_t q_ld() const { return static_cast<int64_t>(heads) * hd; }
  int64_t kv_ld() const { return static_cast<int64_t>(kv_heads) * hd; }
};

// One device's attention over all rows: the flash kernel, or the split kernel's block-causal mask.
std::vector<float> whole(const Case& c, const DevBuf& q, const DevBuf& k, const DevBuf& v, int64_t block) {
  DevBuf out(static_cast<size_t>(c.rows * c.q_ld()));
  if (block > 0) {
    const size_t ws_bytes = size_t{64} << 20;
    float* ws = nullptr;
    CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
    cuda::flash_attention_split(q.bf(), c.rows, k.bf(), v.bf(), c.rows, nullptr, nullptr, 0, c.heads, c.kv_heads, c.hd,
                                c.scale(), out.bf(), ws, ws_bytes, 0, 0, block, nullptr, 0);
    CUDA_CHECK(cudaDeviceSynchronize());
    cudaFree(ws);
  } else {
    cuda::flash_attention(q.bf(), c.rows, k.bf(), v.bf(), c.rows, c.heads, c.kv_heads, c.hd, c.scale(), out.bf(), 0);
  }
  return out.get();
}

// Runs the schedule on every rank (a thread each, its own stream) over comm(r); the ranks' rows
// of the output, gathered.
template <class CommOf>
std::vector<float> sharded(const Case& c, const DevBuf& q, const DevBuf& k, const DevBuf& v, int64_t block, int n,
                           CommOf comm_of) {
  DevBuf out(static_cast<size_t>(c.rows * c.q_ld()));
  out.poison();
  const std::vector<Shard> shards = shard_rows(c.rows, n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        cudaStream_t s;
        CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        const Shard sh = shards[static_cast<size_t>(r)];
        all_to_all_attention_cuda(comm_of(r), q.bf() + sh.begin * c.q_ld(), k.bf() + sh.begin * c.kv_ld(),
                                  v.bf() + sh.begin * c.kv_ld(), c.rows, c.heads, c.kv_heads, c.hd, c.scale(), block,
                                  out.bf() + sh.begin * c.q_ld(), s);
        CUDA_CHECK(cudaStreamDestroy(s));
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out.get();
}

TEST(ShardedAttentionGpu, RanksOnOneDeviceEqualTheWholeAttention) {
  const Case c;
  const HostBf16 q = test::random_bf16(rng, static_cast<size_t>(c.rows * c.q_ld()), 1.f),
                 k = test::random_bf16(rng, static_cast<size_t>(c.rows * c.kv_ld()), 1.f),
                 v = test::random_bf16(rng, static_cast<size_t>(c.rows * c.kv_ld()), 1.f);
  DevBuf dq(q.bits), dk(k.bits), dv(v.bits);
  for (int64_t block : {0, 32}) {
    const std::vector<float> ref = whole(c, dq, dk, dv, block);
    for (int n : {1, 2, 4}) {
      LocalGroup g(n, device_copy);
      const std::vector<float> got = sharded(c, dq, dk, dv, block, n, [&](int r) -> Communicator& { return g.rank(r); });
      if (block == 0)  // the same kernel per (query tile, head) on fewer heads: equal
        EXPECT_EQ(got, ref) << n << " ranks";
      else  // the split kernel cuts keys by the CTAs in flight, which the head count changes
        EXPECT_LT(test::rel_err(got, ref), 1e-2) << n << " ranks, block " << block;
    }
  }
}

#if defined(MOSAIC_NCCL)
TEST(ShardedAttentionGpu, OneRankThroughNcclEqualsTheWholeAttention) {
  std::string why;
  if (!NcclCommunicator::available(&why)) GTEST_SKIP() << why;
  const Case c;
  const HostBf16 q = test::random_bf16(rng, static_cast<size_t>(c.rows * c.q_ld()), 1.f),
                 k = test::random_bf16(rng, static_cast<size_t>(c.rows * c.kv_ld()), 1.f),
                 v = test::random_bf16(rng, static_cast<size_t>(c.rows * c.kv_ld()), 1.f);
  DevBuf dq(q.bits), dk(k.bits), dv(v.bits);
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  auto comms = NcclCommunicator::for_devices({dev});
  ASSERT_EQ(comms.size(), 1u);
  EXPECT_EQ(comms[0]->size(), 1);
  const std::vector<float> got = sharded(c, dq, dk, dv, 0, 1, [&](int) -> Communicator& { return *comms[0]; });
  EXPECT_EQ(got, whole(c, dq, dk, dv, 0));
}
#endif

}  // namespace
}  // namespace mosaic::parallel
