#include "parallel/all_to_all_attention.h"

#include <algorithm>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "parallel/sequence_shards.h"

namespace mosaic::parallel {

namespace {

// Columns [c0, c0 + cols) of rows [r0, r0 + n) of a row-major [.., ld] matrix, packed [n, cols].
void pack(const float* x, int64_t ld, int64_t r0, int64_t n, int64_t c0, int64_t cols, float* dst) {
  for (int64_t i = 0; i < n; ++i) std::copy_n(x + (r0 + i) * ld + c0, cols, dst + i * cols);
}
// The inverse: a packed [n, cols] block into rows [r0, r0 + n), columns [c0, c0 + cols).
void unpack(const float* src, int64_t r0, int64_t n, int64_t c0, int64_t cols, float* x, int64_t ld) {
  for (int64_t i = 0; i < n; ++i) std::copy_n(src + i * cols, cols, x + (r0 + i) * ld + c0);
}

}  // namespace

void all_to_all_attention_cpu(Communicator& comm, const float* q, const float* k, const float* v, int64_t rows,
                              int heads, int kv_heads, int hd, float scale, int64_t block, float* out) {
  const int n = comm.size(), me = comm.rank();
  const std::vector<Shard> shards = shard_rows(rows, n);
  const HeadGroups groups = shard_heads(heads, kv_heads, n);
  const Shard mine = shards[static_cast<size_t>(me)];
  const int64_t q_ld = static_cast<int64_t>(heads) * hd, kv_ld = static_cast<int64_t>(kv_heads) * hd;
  // This rank's group (the same widths on every rank: the groups are equal).
  const int64_t gq = groups.heads[0].count * hd, gkv = groups.kv_heads[0].count * hd;
  const int64_t per_row = gq + 2 * gkv;  // one row of one group's q, k and v, packed

  // 1. To rank j: my rows of group j's q, k, v. From rank i: its rows of my group.
  std::vector<std::vector<float>> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
  std::vector<const void*> send_p;
  std::vector<void*> recv_p;
  std::vector<size_t> send_b, recv_b;
  for (int j = 0; j < n; ++j) {
    std::vector<float>& s = send[static_cast<size_t>(j)];
    s.resize(static_cast<size_t>(mine.count * per_row));
    const int64_t qc = groups.heads[static_cast<size_t>(j)].begin * hd, kc = groups.kv_heads[static_cast<size_t>(j)].begin * hd;
    pack(q, q_ld, 0, mine.count, qc, gq, s.data());
    pack(k, kv_ld, 0, mine.count, kc, gkv, s.data() + mine.count * gq);
    pack(v, kv_ld, 0, mine.count, kc, gkv, s.data() + mine.count * (gq + gkv));
    std::vector<float>& r = recv[static_cast<size_t>(j)];
    r.resize(static_cast<size_t>(shards[static_cast<size_t>(j)].count * per_row));
    send_p.push_back(s.data());
    send_b.push_back(s.size() * sizeof(float));
    recv_p.push_back(r.data());
    recv_b.push_back(r.size() * sizeof(float));
  }
  comm.all_to_all(send_p, send_b, recv_p, recv_b);

  // 2. Every row of my group of heads, in sequence order, and the attention over them.
  std::vector<float> qg(static_cast<size_t>(rows * gq)), kg(static_cast<size_t>(rows * gkv)),
      vg(static_cast<size_t>(rows * gkv)), og(static_cast<size_t>(rows * gq));
  for (int i = 0; i < n; ++i) {
    const Shard s = shards[static_cast<size_t>(i)];
    const float* r = recv[static_cast<size_t>(i)].data();
    unpack(r, s.begin, s.count, 0, gq, qg.data(), gq);
    unpack(r + s.count * gq, s.begin, s.count, 0, gkv, kg.data(), gkv);
    unpack(r + s.count * (gq + gkv), s.begin, s.count, 0, gkv, vg.data(), gkv);
  }
  std::vector<float> ws(static_cast<size_t>(cpu_traits().attn_workspace_rows * std::max<int64_t>(rows, 1)));
  cpu::attention(qg.data(), rows, {kg.data(), vg.data(), rows}, {}, static_cast<int>(groups.heads[0].count),
                 static_cast<int>(groups.kv_heads[0].count), hd, scale, og.data(), ws.data(),
                 AttentionMask{block, nullptr, 0});

  // 3. Back: to rank j its rows of my group's output; from rank i my rows of its group's.
  send_p.clear(), send_b.clear(), recv_p.clear(), recv_b.clear();
  for (int j = 0; j < n; ++j) {
    const Shard s = shards[static_cast<size_t>(j)];
    std::vector<float>& b = send[static_cast<size_t>(j)];
    b.resize(static_cast<size_t>(s.count * gq));
    pack(og.data(), gq, s.begin, s.count, 0, gq, b.data());
    std::vector<float>& r = recv[static_cast<size_t>(j)];
    r.resize(static_cast<size_t>(mine.count * gq));
    send_p.push_back(b.data());
    send_b.push_back(b.size() * sizeof(float));
    recv_p.push_back(r.data());
    recv_b.push_back(r.size() * sizeof(float));
  }
  comm.all_to_all(send_p, send_b, recv_p, recv_b);
  for (int i = 0; i < n; ++i)
    unpack(recv[static_cast<size_t>(i)].data(), 0, mine.count, groups.heads[static_cast<size_t>(i)].begin * hd, gq,
           out, q_ld);
}

}  // namespace mosaic::parallel
