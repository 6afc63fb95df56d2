#include "parallel/cuda/all_to_all_attention_cuda.h"

#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "parallel/sequence_shards.h"

namespace mosaic::parallel {

namespace {

constexpr size_t kBf16 = 2;

// Device memory freed at scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (bytes > 0) CUDA_CHECK(cudaMalloc(&p, bytes));
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p) { o.p = nullptr; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Columns [c0, c0 + cols) of rows [r0, r0 + n) of a [.., ld] bf16 matrix to a packed [n, cols]
// one at dst (row pitch dst_ld), on s.
void copy_block(const void* src, int64_t src_ld, int64_t r0, int64_t c0, int64_t n, int64_t cols, void* dst,
                int64_t dst_ld, int64_t dst_r0, int64_t dst_c0, cudaStream_t s) {
  if (n == 0 || cols == 0) return;
  CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(dst) + (dst_r0 * dst_ld + dst_c0) * kBf16, dst_ld * kBf16,
                               static_cast<const char*>(src) + (r0 * src_ld + c0) * kBf16, src_ld * kBf16,
                               cols * kBf16, n, cudaMemcpyDeviceToDevice, s));
}

// The stream's device is current for the call (buffers are allocated there), and the caller's
// device again after it.
struct StreamDevice {
  int previous = 0;
  explicit StreamDevice(cudaStream_t s) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&previous));
    CUDA_CHECK(cudaStreamGetDevice(s, &dev));
    CUDA_CHECK(cudaSetDevice(dev));
  }
  ~StreamDevice() { cudaSetDevice(previous); }
};

}  // namespace

void all_to_all_attention_cuda(Communicator& comm, const __nv_bfloat16* q, const __nv_bfloat16* k,
                               const __nv_bfloat16* v, int64_t rows, int heads, int kv_heads, int hd, float scale,
                               int64_t block, __nv_bfloat16* out, cudaStream_t s) {
  const StreamDevice on_stream_device(s);
  const int n = comm.size(), me = comm.rank();
  const std::vector<Shard> shards = shard_rows(rows, n);
  const HeadGroups groups = shard_heads(heads, kv_heads, n);
  const Shard mine = shards[static_cast<size_t>(me)];
  const int64_t q_ld = static_cast<int64_t>(heads) * hd, kv_ld = static_cast<int64_t>(kv_heads) * hd;
  const int64_t gq = groups.heads[0].count * hd, gkv = groups.kv_heads[0].count * hd, per_row = gq + 2 * gkv;

  // 1. To rank j: my rows of its group's q, k, v (packed one after another); from rank i: its
  // rows of my group.
  std::vector<DeviceBuffer> send, recv;
  std::vector<const void*> sp;
  std::vector<void*> rp;
  std::vector<size_t> sb, rb;
  for (int j = 0; j < n; ++j) {
    const int64_t qc = groups.heads[static_cast<size_t>(j)].begin * hd;
    const int64_t kc = groups.kv_heads[static_cast<size_t>(j)].begin * hd;
    send.emplace_back(static_cast<size_t>(mine.count * per_row) * kBf16);
    char* b = send.back().as<char>();
    copy_block(q, q_ld, 0, qc, mine.count, gq, b, gq, 0, 0, s);
    copy_block(k, kv_ld, 0, kc, mine.count, gkv, b + mine.count * gq * kBf16, gkv, 0, 0, s);
    copy_block(v, kv_ld, 0, kc, mine.count, gkv, b + mine.count * (gq + gkv) * kBf16, gkv, 0, 0, s);
    recv.emplace_back(static_cast<size_t>(shards[static_cast<size_t>(j)].count * per_row) * kBf16);
    sp.push_back(send.back().p);
    sb.push_back(static_cast<size_t>(mine.count * per_row) * kBf16);
    rp.push_back(recv.back().p);
    rb.push_back(static_cast<size_t>(shards[static_cast<size_t>(j)].count * per_row) * kBf16);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));  // packed before another stream (NCCL's, a copy) reads it
  comm.all_to_all(sp, sb, rp, rb);

  // 2. Every row of my group, in sequence order, and the attention over them.
  DeviceBuffer qg(static_cast<size_t>(rows * gq) * kBf16), kg(static_cast<size_t>(rows * gkv) * kBf16),
      vg(static_cast<size_t>(rows * gkv) * kBf16), og(static_cast<size_t>(rows * gq) * kBf16);
  for (int i = 0; i < n; ++i) {
    const Shard sh = shards[static_cast<size_t>(i)];
    const char* r = recv[static_cast<size_t>(i)].as<char>();
    copy_block(r, gq, 0, 0, sh.count, gq, qg.p, gq, sh.begin, 0, s);
    copy_block(r + sh.count * gq * kBf16, gkv, 0, 0, sh.count, gkv, kg.p, gkv, sh.begin, 0, s);
    copy_block(r + sh.count * (gq + gkv) * kBf16, gkv, 0, 0, sh.count, gkv, vg.p, gkv, sh.begin, 0, s);
  }
  const int hg = static_cast<int>(groups.heads[0].count), kvg = static_cast<int>(groups.kv_heads[0].count);
  if (block > 0) {  // the block-causal mask is the split kernel's
    constexpr size_t kWorkspace = size_t{64} << 20;
    DeviceBuffer ws(kWorkspace);
    cuda::flash_attention_split(qg.as<cuda::bf16>(), rows, kg.as<cuda::bf16>(), vg.as<cuda::bf16>(), rows, nullptr,
                                nullptr, 0, hg, kvg, hd, scale, og.as<cuda::bf16>(), ws.as<float>(), kWorkspace, s, 0,
                                block, nullptr, 0);
    CUDA_CHECK(cudaStreamSynchronize(s));  // before ws is freed
  } else {
    cuda::flash_attention(qg.as<cuda::bf16>(), rows, kg.as<cuda::bf16>(), vg.as<cuda::bf16>(), rows, hg, kvg, hd,
                          scale, og.as<cuda::bf16>(), s);
  }

  // 3. Back: to rank j its rows of my group's output; from rank i my rows of its group's.
  std::vector<DeviceBuffer> back, home;
  sp.clear(), sb.clear(), rp.clear(), rb.clear();
  for (int j = 0; j < n; ++j) {
    const Shard sh = shards[static_cast<size_t>(j)];
    back.emplace_back(static_cast<size_t>(sh.count * gq) * kBf16);
    copy_block(og.p, gq, sh.begin, 0, sh.count, gq, back.back().p, gq, 0, 0, s);
    home.emplace_back(static_cast<size_t>(mine.count * gq) * kBf16);
    sp.push_back(back.back().p);
    sb.push_back(static_cast<size_t>(sh.count * gq) * kBf16);
    rp.push_back(home.back().p);
    rb.push_back(static_cast<size_t>(mine.count * gq) * kBf16);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  comm.all_to_all(sp, sb, rp, rb);
  for (int i = 0; i < n; ++i)
    copy_block(home[static_cast<size_t>(i)].p, gq, 0, 0, mine.count, gq, out, q_ld, 0,
               groups.heads[static_cast<size_t>(i)].begin * hd, s);
  CUDA_CHECK(cudaStreamSynchronize(s));  // the buffers go at return
}

}  // namespace mosaic::parallel
