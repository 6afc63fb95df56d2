#include "parallel/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "parallel/sequence_shards.h"

namespace mosaic::parallel {

namespace {

// Folds keys [k0, k0 + nk) (rows of k, v) into the running softmax of query rows [q0, q0 + nq):
// per (row, head) its maximum m, sum l and unnormalised output o (double accumulators).
struct Running {
  std::vector<double> m, l, o;  // [nq * heads], [nq * heads], [nq * heads * hd]
};

void fold(const float* q, int64_t q0, int64_t nq, const float* k, const float* v, int64_t k0, int64_t nk, int heads,
          int kv_heads, int hd, float scale, int64_t block, Running& run) {
  const int group = heads / kv_heads;
  const int64_t q_ld = static_cast<int64_t>(heads) * hd, kv_ld = static_cast<int64_t>(kv_heads) * hd;
  std::vector<double> s(static_cast<size_t>(nk));
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t pos = q0 + i;
    const int64_t limit = block > 0 ? (pos / block + 1) * block : std::numeric_limits<int64_t>::max();
    const int64_t seen = std::clamp<int64_t>(limit - k0, 0, nk);  // keys of this block the row sees
    if (seen == 0) continue;
    for (int h = 0; h < heads; ++h) {
      const float* qr = q + i * q_ld + static_cast<int64_t>(h) * hd;
      const int64_t kvh = h / group;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < seen; ++j) {
        const float* kr = k + j * kv_ld + kvh * hd;
        double dot = 0;
        for (int c = 0; c < hd; ++c) dot += static_cast<double>(qr[c]) * kr[c];
        s[static_cast<size_t>(j)] = dot * scale;
        mx = std::max(mx, s[static_cast<size_t>(j)]);
      }
      const size_t at = static_cast<size_t>(i * heads + h);
      const double m_new = std::max(run.m[at], mx);
      const double keep = std::exp(run.m[at] - m_new);  // 0 while the row has seen nothing
      double* o = run.o.data() + at * static_cast<size_t>(hd);
      for (int c = 0; c < hd; ++c) o[c] *= keep;
      double sum = run.l[at] * keep;
      for (int64_t j = 0; j < seen; ++j) {
        const double p = std::exp(s[static_cast<size_t>(j)] - m_new);
        sum += p;
        const float* vr = v + j * kv_ld + kvh * hd;
        for (int c = 0; c < hd; ++c) o[c] += p * vr[c];
      }
      run.m[at] = m_new;
      run.l[at] = sum;
    }
  }
}

}  // namespace

void ring_attention_cpu(Communicator& comm, const float* q, const float* k, const float* v, int64_t rows, int heads,
                        int kv_heads, int hd, float scale, int64_t block, float* out) {
  MOSAIC_CHECK(kv_heads > 0 && heads % kv_heads == 0, "ring attention: {} query heads over {} key/value heads", heads,
               kv_heads);
  const int n = comm.size(), me = comm.rank();
  const std::vector<Shard> shards = shard_rows(rows, n);
  const Shard mine = shards[static_cast<size_t>(me)];
  const int64_t kv_ld = static_cast<int64_t>(kv_heads) * hd, q_ld = static_cast<int64_t>(heads) * hd;
  Running run;
  run.m.assign(static_cast<size_t>(mine.count * heads), -std::numeric_limits<double>::infinity());
  run.l.assign(static_cast<size_t>(mine.count * heads), 0.0);
  run.o.assign(static_cast<size_t>(mine.count * q_ld), 0.0);

  // The block visiting this rank at step t is rank (me - t)'s; it holds K then V, packed.
  std::vector<float> here(static_cast<size_t>(2 * mine.count * kv_ld)), next;
  std::copy_n(k, mine.count * kv_ld, here.begin());
  std::copy_n(v, mine.count * kv_ld, here.begin() + mine.count * kv_ld);
  for (int t = 0; t < n; ++t) {
    const Shard from = shards[static_cast<size_t>(((me - t) % n + n) % n)];
    if (t + 1 < n) {  // one hop: this block to rank me + 1, the next from rank me - 1
      const int to = (me + 1) % n, prev = (me - 1 + n) % n;
      const Shard incoming = shards[static_cast<size_t>(((me - t - 1) % n + n) % n)];
      next.resize(static_cast<size_t>(2 * incoming.count * kv_ld));
      std::vector<const void*> sp(static_cast<size_t>(n), nullptr);
      std::vector<void*> rp(static_cast<size_t>(n), nullptr);
      std::vector<size_t> sb(static_cast<size_t>(n), 0), rb(static_cast<size_t>(n), 0);
      sp[static_cast<size_t>(to)] = here.data();
      sb[static_cast<size_t>(to)] = here.size() * sizeof(float);
      rp[static_cast<size_t>(prev)] = next.data();
      rb[static_cast<size_t>(prev)] = next.size() * sizeof(float);
      // (With two ranks `to` and `prev` are one peer, sent to and received from.) Here the hop
      // precedes the fold; the GPU form overlaps the two.
      comm.all_to_all(sp, sb, rp, rb);
    }
    fold(q, mine.begin, mine.count, here.data(), here.data() + from.count * kv_ld, from.begin, from.count, heads,
         kv_heads, hd, scale, block, run);
    if (t + 1 < n) here.swap(next);
  }
  for (int64_t i = 0; i < mine.count; ++i)
    for (int h = 0; h < heads; ++h) {
      const size_t at = static_cast<size_t>(i * heads + h);
      const double inv = run.l[at] > 0 ? 1.0 / run.l[at] : 0.0;
      for (int c = 0; c < hd; ++c)
        out[i * q_ld + static_cast<int64_t>(h) * hd + c] = static_cast<float>(run.o[at * static_cast<size_t>(hd) + c] * inv);
    }
}

}  // namespace mosaic::parallel
