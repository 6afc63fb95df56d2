// cuda::flash_attention_split against the CPU oracle: keys in two places (a sparse cache's kept
// rows, then the block's fresh ones) and few query rows over many keys, with the splits chosen
// automatically or forced, and a workspace small enough to run the query rows in chunks. Plus
// the cached-step shapes timed against the one-CTA-per-query-tile paths (printed, not asserted).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "core/error.h"
#include "gpu/bf16_buffers.h"
#if defined(MOSAIC_CUDNN)
#include "backend/cuda/cudnn_attention.h"
#endif

namespace mosaic {
namespace {

using test::DevBuf;
using test::HostBf16;

std::mt19937 rng(20261203);

struct Case {
  int64_t rows, n1, n2;
  int heads, kv_heads, hd;
};

// The oracle runs over the two sources concatenated, as one array of keys.
std::vector<float> oracle(const HostBf16& q, const Case& c, const HostBf16& k, const HostBf16& v, float scale) {
  std::vector<float> ref(static_cast<size_t>(c.rows) * c.heads * c.hd);
  std::vector<float> ws(static_cast<size_t>(cpu_traits().attn_workspace_rows) * (c.n1 + c.n2));
  cpu::attention(q.f.data(), c.rows, k.f.data(), v.f.data(), c.n1 + c.n2, c.heads, c.kv_heads, c.hd, scale,
                 ref.data(), ws.data());
  return ref;
}

struct Workspace {
  float* p = nullptr;
  size_t bytes;
  explicit Workspace(size_t b) : bytes(b) { CUDA_CHECK(cudaMalloc(&p, bytes)); }
  ~Workspace() { cudaFree(p); }
};

TEST(SplitAttention, TwoKeySourcesMatchTheCpuOracle) {
  std::vector<Case> cases;
  for (int hd : {64, 128})
    for (auto [heads, kv_heads] : {std::pair{4, 4}, std::pair{28, 4}})
      for (int64_t rows : {1, 32, 100})
        for (auto [n1, n2] : {std::pair<int64_t, int64_t>{37, 32}, {1000, 32}, {0, 69}, {300, 0}, {2160, 5}})
          cases.push_back({rows, n1, n2, heads, kv_heads, hd});
  cases.push_back({32, 2160, 32, 32, 32, 128});  // LLaDA-8B's sparse cached step at a 4k context
  Workspace ws(size_t{64} << 20);
  for (const Case& c : cases) {
    const int64_t qn = c.rows * c.heads * c.hd, kv_w = static_cast<int64_t>(c.kv_heads) * c.hd;
    const HostBf16 q = test::random_bf16(rng, qn, 1.f), k = test::random_bf16(rng, (c.n1 + c.n2) * kv_w, 1.f),
                   v = test::random_bf16(rng, (c.n1 + c.n2) * kv_w, 1.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.hd));
    const std::vector<float> ref = oracle(q, c, k, v, scale);
    // The second source in a buffer of its own, as the block's fresh keys are.
    auto part = [&](const HostBf16& x, int64_t from, int64_t to) {
      return std::vector<uint16_t>(x.bits.begin() + from * kv_w, x.bits.begin() + to * kv_w);
    };
    DevBuf dq(q.bits), dk1(part(k, 0, c.n1)), dv1(part(v, 0, c.n1)), dk2(part(k, c.n1, c.n1 + c.n2)),
        dv2(part(v, c.n1, c.n1 + c.n2)), out(qn);
    for (int splits : {0, 2, 7}) {
      out.poison();
      cuda::flash_attention_split(dq.bf(), c.rows, dk1.bf(), dv1.bf(), c.n1, dk2.bf(), dv2.bf(), c.n2, c.heads,
                                  c.kv_heads, c.hd, scale, out.bf(), ws.p, ws.bytes, 0, splits);
      CUDA_CHECK(cudaGetLastError());
      EXPECT_LT(test::rel_err(out.get(), ref), 1e-2)
          << "rows " << c.rows << " keys " << c.n1 << " + " << c.n2 << " heads " << c.heads << "/" << c.kv_heads
          << " hd " << c.hd << " splits " << splits;
    }
  }
}

// Block-causal (LLaDA2.0): each query sees the keys below the end of its block. A whole step
// (positions 0..n-1), a cached step's block against the cache, and head rows at explicit positions.
TEST(SplitAttention, BlockCausalMatchesTheCpuOracle) {
  struct Masked {
    int64_t n;                       // keys: positions 0 .. n-1
    std::vector<int32_t> positions;  // the queries'
    int64_t block;
    int heads, kv_heads, hd;
  };
  auto range = [](int32_t a, int32_t b) {
    std::vector<int32_t> v;
    for (int32_t i = a; i < b; ++i) v.push_back(i);
    return v;
  };
  std::vector<Masked> cases;
  for (int hd : {64, 128}) {
    cases.push_back({100, range(0, 100), 8, 4, 2, hd});
    cases.push_back({300, range(0, 300), 32, 4, 4, hd});
    cases.push_back({48, range(40, 48), 8, 4, 2, hd});
    cases.push_back({100, {3, 17, 18, 40, 99}, 8, 4, 2, hd});
    cases.push_back({4352, range(4320, 4352), 32, 16, 4, hd});
  }
  Workspace ws(size_t{64} << 20);
  for (const Masked& c : cases) {
    const int64_t rows = static_cast<int64_t>(c.positions.size()), qn = rows * c.heads * c.hd,
                  kvn = c.n * c.kv_heads * c.hd;
    const HostBf16 q = test::random_bf16(rng, qn, 1.f), k = test::random_bf16(rng, kvn, 1.f),
                   v = test::random_bf16(rng, kvn, 1.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.hd));
    std::vector<float> ref(static_cast<size_t>(qn));
    std::vector<float> cws(static_cast<size_t>(cpu_traits().attn_workspace_rows) * c.n);
    cpu::attention(q.f.data(), rows, {k.f.data(), v.f.data(), c.n}, {}, c.heads, c.kv_heads, c.hd, scale, ref.data(),
                   cws.data(), AttentionMask{c.block, c.positions.data(), 0});
    DevBuf dq(q.bits), dk(k.bits), dv(v.bits), out(qn);
    int32_t* dpos = nullptr;
    CUDA_CHECK(cudaMalloc(&dpos, c.positions.size() * 4));
    CUDA_CHECK(cudaMemcpy(dpos, c.positions.data(), c.positions.size() * 4, cudaMemcpyHostToDevice));
    for (int splits : {0, 1, 3}) {
      out.poison();
      cuda::flash_attention_split(dq.bf(), rows, dk.bf(), dv.bf(), c.n, nullptr, nullptr, 0, c.heads, c.kv_heads,
                                  c.hd, scale, out.bf(), ws.p, ws.bytes, 0, splits, c.block, dpos, 0);
      CUDA_CHECK(cudaGetLastError());
      EXPECT_LT(test::rel_err(out.get(), ref), 1e-2)
          << "keys " << c.n << " queries " << rows << " block " << c.block << " hd " << c.hd << " splits " << splits;
    }
    // A cache's rows past what any query sees may hold anything (not written yet, another
    // step's bytes): NaN there must not reach the output.
    int64_t seen = 0;
    for (int32_t p : c.positions) seen = std::max<int64_t>(seen, (p / c.block + 1) * c.block);
    if (seen < c.n) {
      std::vector<uint16_t> kb = k.bits, vb = v.bits;
      for (int64_t i = seen * c.kv_heads * c.hd; i < kvn; ++i) kb[i] = vb[i] = 0x7fc0;  // bf16 NaN
      DevBuf nk(kb), nv(vb);
      for (int splits : {0, 1, 3}) {
        out.poison();
        cuda::flash_attention_split(dq.bf(), rows, nk.bf(), nv.bf(), c.n, nullptr, nullptr, 0, c.heads, c.kv_heads,
                                    c.hd, scale, out.bf(), ws.p, ws.bytes, 0, splits, c.block, dpos, 0);
        CUDA_CHECK(cudaGetLastError());
        EXPECT_LT(test::rel_err(out.get(), ref), 1e-2) << "NaN past the seen keys: keys " << c.n << " queries "
                                                       << rows << " block " << c.block << " hd " << c.hd
                                                       << " splits " << splits;
      }
    }
    CUDA_CHECK(cudaFree(dpos));
  }
}

// A workspace for a few query rows only: the rows run in several launches and still all get
// written, each with its own softmax.
TEST(SplitAttention, ASmallWorkspaceRunsTheRowsInChunks) {
  const Case c{300, 500, 40, 8, 2, 128};
  const int64_t qn = c.rows * c.heads * c.hd, kv_w = static_cast<int64_t>(c.kv_heads) * c.hd;
  const HostBf16 q = test::random_bf16(rng, qn, 2.f), k = test::random_bf16(rng, (c.n1 + c.n2) * kv_w, 1.f),
                 v = test::random_bf16(rng, (c.n1 + c.n2) * kv_w, 1.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(c.hd));
  const std::vector<float> ref = oracle(q, c, k, v, scale);
  DevBuf dq(q.bits), dk(k.bits), dv(v.bits), out(qn);
  const int splits = 4;
  const size_t row_bytes = static_cast<size_t>(splits) * c.heads * (c.hd + 1) * sizeof(float);
  for (size_t rows_fit : {size_t{1}, size_t{70}, size_t{64}}) {
    Workspace ws(rows_fit * row_bytes);
    out.poison();
    const cuda::bf16* k2 = dk.bf() + c.n1 * kv_w;
    const cuda::bf16* v2 = dv.bf() + c.n1 * kv_w;
    cuda::flash_attention_split(dq.bf(), c.rows, dk.bf(), dv.bf(), c.n1, k2, v2, c.n2, c.heads, c.kv_heads, c.hd,
                                scale, out.bf(), ws.p, ws.bytes, 0, splits);
    EXPECT_LT(test::rel_err(out.get(), ref), 1e-2) << "a workspace for " << rows_fit << " rows";
  }
  Workspace tiny(row_bytes / 2);
  EXPECT_THROW(cuda::flash_attention_split(dq.bf(), c.rows, dk.bf(), dv.bf(), c.n1, dk.bf(), dv.bf(), c.n2, c.heads,
                                           c.kv_heads, c.hd, scale, out.bf(), tiny.p, tiny.bytes, 0, splits),
               Error);
}

// The attention of a cached step (a block of 32 query rows over the whole cache) on each path,
// timed: the split kernel, mosaic's flash kernel and cuDNN (one CTA per query tile and head).
// A batch's packed sequences in one call: every query reads only its own sequence's keys
// ([key_lo, key_hi) per query), block-causal limits folded in for one of them; each sequence's
// rows equal the oracle run on that sequence alone, with the splits chosen or forced and with a
// workspace that runs the rows in chunks.
TEST(SplitAttention, KeyRangesMatchEachSequenceAlone) {
  struct Seq {
    int64_t rows, keys, block;
  };
  for (int hd : {64, 128}) {
    const int heads = 8, kv_heads = 4;
    const std::vector<Seq> seqs = {{32, 300, 0}, {5, 77, 0}, {64, 520, 64}, {100, 100, 0}, {1, 1, 0}};
    int64_t rows = 0, keys = 0;
    for (const Seq& q : seqs) rows += q.rows, keys += q.keys;
    const int64_t q_w = static_cast<int64_t>(heads) * hd, kv_w = static_cast<int64_t>(kv_heads) * hd;
    const HostBf16 q = test::random_bf16(rng, rows * q_w, 1.f), k = test::random_bf16(rng, keys * kv_w, 1.f),
                   v = test::random_bf16(rng, keys * kv_w, 1.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
    std::vector<float> ref(static_cast<size_t>(rows * q_w));
    std::vector<int32_t> lo, hi;
    int64_t r0 = 0, k0 = 0;
    for (const Seq& sq : seqs) {
      // The last rows of the sequence: positions keys - rows .. keys - 1 (a block at its end).
      std::vector<int32_t> pos;
      for (int64_t i = 0; i < sq.rows; ++i) pos.push_back(static_cast<int32_t>(sq.keys - sq.rows + i));
      std::vector<float> cws(static_cast<size_t>(cpu_traits().attn_workspace_rows) * sq.keys);
      cpu::attention(q.f.data() + r0 * q_w, sq.rows, {k.f.data() + k0 * kv_w, v.f.data() + k0 * kv_w, sq.keys}, {},
                     heads, kv_heads, hd, scale, ref.data() + r0 * q_w, cws.data(),
                     AttentionMask{sq.block, pos.data(), 0});
      for (int32_t p : pos) {
        lo.push_back(static_cast<int32_t>(k0));
        hi.push_back(static_cast<int32_t>(k0 + (sq.block > 0 ? std::min(sq.keys, (p / sq.block + 1) * sq.block) : sq.keys)));
      }
      r0 += sq.rows;
      k0 += sq.keys;
    }
    DevBuf dq(q.bits), dk(k.bits), dv(v.bits), out(rows * q_w);
    int32_t *dlo = nullptr, *dhi = nullptr;
    CUDA_CHECK(cudaMalloc(&dlo, lo.size() * 4));
    CUDA_CHECK(cudaMalloc(&dhi, hi.size() * 4));
    CUDA_CHECK(cudaMemcpy(dlo, lo.data(), lo.size() * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dhi, hi.data(), hi.size() * 4, cudaMemcpyHostToDevice));
    // key_span: unknown (0), or the longest range (the splits then sized to a query tile's span).
    for (int64_t span : {int64_t{0}, int64_t{520}})
      for (size_t ws_bytes : {size_t{64} << 20, size_t{200} << 10})
        for (int splits : {0, 1, 3}) {
          Workspace ws(ws_bytes);
          out.poison();
          cuda::flash_attention_split(dq.bf(), rows, dk.bf(), dv.bf(), keys, nullptr, nullptr, 0, heads, kv_heads, hd,
                                      scale, out.bf(), ws.p, ws.bytes, 0, splits, 0, nullptr, 0, dlo, dhi, span);
          CUDA_CHECK(cudaGetLastError());
          EXPECT_LT(test::rel_err(out.get(), ref), 1e-2) << "hd " << hd << " splits " << splits << " workspace "
                                                         << ws_bytes << " span " << span;
        }
    CUDA_CHECK(cudaFree(dlo));
    CUDA_CHECK(cudaFree(dhi));
  }
}

TEST(SplitAttention, CachedStepShapesTimed) {
  struct Shape {
    int64_t rows, n1, n2;
    int heads, kv_heads;
  };
  Workspace ws(size_t{64} << 20);
#if defined(MOSAIC_CUDNN)
  cuda::CudnnAttention dnn(nullptr);
#endif
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  for (const Shape s : {Shape{32, 4352, 0, 32, 32}, Shape{32, 2160, 32, 32, 32}, Shape{32, 131104, 0, 32, 32},
                        Shape{32, 65536, 32, 32, 32}, Shape{32, 4352, 0, 28, 4}, Shape{256, 4352, 0, 32, 32}}) {
    const int hd = 128;
    const int64_t qn = s.rows * s.heads * hd, kvn = (s.n1 + s.n2) * s.kv_heads * hd;
    const HostBf16 q = test::random_bf16(rng, qn, 1.f), k = test::random_bf16(rng, kvn, 1.f),
                   v = test::random_bf16(rng, kvn, 1.f);
    DevBuf dq(q.bits), dk(k.bits), dv(v.bits), out(qn), out_split(qn);
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
    const int64_t kv_w = static_cast<int64_t>(s.kv_heads) * hd;
    auto time = [&](auto&& launch) {
      for (int i = 0; i < 3; ++i) launch();
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<float> ms;
      for (int i = 0; i < 20; ++i) {
        CUDA_CHECK(cudaEventRecord(e0, 0));
        launch();
        CUDA_CHECK(cudaEventRecord(e1, 0));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      return 0.5 * (ms[9] + ms[10]);
    };
    const double split_ms = time([&] {
      cuda::flash_attention_split(dq.bf(), s.rows, dk.bf(), dv.bf(), s.n1, dk.bf() + s.n1 * kv_w,
                                  dv.bf() + s.n1 * kv_w, s.n2, s.heads, s.kv_heads, hd, scale, out_split.bf(), ws.p,
                                  ws.bytes, 0);
    });
    const int64_t n = s.n1 + s.n2;
    const double flash_ms = time([&] {
      cuda::flash_attention(dq.bf(), s.rows, dk.bf(), dv.bf(), n, s.heads, s.kv_heads, hd, scale, out.bf(), 0);
    });
    const double diff = test::rel_err(out_split.get(), out.get());
    EXPECT_LT(diff, 1e-2) << "split and flash disagree";
    double dnn_ms = NAN;
#if defined(MOSAIC_CUDNN)
    if (dnn.run(dq.p, s.rows, dk.p, dv.p, n, s.heads, s.kv_heads, hd, scale, out.p, ws.p, ws.bytes))
      dnn_ms = time([&] { dnn.run(dq.p, s.rows, dk.p, dv.p, n, s.heads, s.kv_heads, hd, scale, out.p, ws.p, ws.bytes); });
#endif
    const double gb = 2.0 * static_cast<double>(kvn) * 1e-9;  // K and V read once, bf16
    std::printf("rows %4lld keys %7lld + %3lld heads %d/%d: split %.4f ms (%.0f GB/s)  flash %.4f ms  cudnn %.4f ms"
                "  (split vs flash %.2e)\n",
                static_cast<long long>(s.rows), static_cast<long long>(s.n1), static_cast<long long>(s.n2), s.heads,
                s.kv_heads, split_ms, gb / (split_ms * 1e-3), flash_ms, dnn_ms, diff);
  }
  std::fflush(stdout);
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
}

}  // namespace
}  // namespace mosaic
