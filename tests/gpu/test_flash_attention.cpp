// cuda::flash_attention (and every compiled tile variant of it) against the CPU oracle
// cpu::attention on fresh random bf16 inputs, with the output poisoned (NaN) first; plus a
// timed 4096 x 4096 x 32 heads x 128 case that prints TFLOP/s (printed, not asserted).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "gpu/bf16_buffers.h"

// Internal entry points of backend/cuda/flash_attention.cu (tests and tuning only).
namespace mosaic::cuda::detail {
int flash_attention_variants(int hd);
const char* flash_attention_variant_name(int hd, int variant);
bool flash_attention_variant_available(int hd, int variant);  // wgmma variants need an sm_90a build
int flash_attention_default_variant(int hd);
void flash_attention_variant(int variant, const bf16* q, int64_t rows, const bf16* k, const bf16* v,
                             int64_t kv_rows, int heads, int kv_heads, int hd, float scale, bf16* out,
                             cudaStream_t s);
}  // namespace mosaic::cuda::detail

namespace mosaic {
namespace {

std::mt19937 fa_rng(20240611);

using test::DevBuf;
using test::HostBf16;
using test::rel_err;

HostBf16 random_bf16(size_t n, float stddev) { return test::random_bf16(fa_rng, n, stddev); }

std::vector<float> oracle(const HostBf16& q, int64_t rows, const HostBf16& k, const HostBf16& v, int64_t kv_rows,
                          int heads, int kv_heads, int hd, float scale) {
  std::vector<float> ref(static_cast<size_t>(rows) * heads * hd);
  std::vector<float> ws(static_cast<size_t>(cpu_traits().attn_workspace_rows) * kv_rows);
  cpu::attention(q.f.data(), rows, k.f.data(), v.f.data(), kv_rows, heads, kv_heads, hd, scale, ref.data(),
                 ws.data());
  return ref;
}

// Runs variant `var` (-1: the public entry point) into a freshly poisoned `out`.
void run(int var, const DevBuf& q, int64_t rows, const DevBuf& k, const DevBuf& v, int64_t kv_rows, int heads,
         int kv_heads, int hd, float scale, DevBuf& out) {
  out.poison();
  if (var < 0)
    cuda::flash_attention(q.bf(), rows, k.bf(), v.bf(), kv_rows, heads, kv_heads, hd, scale, out.bf(), 0);
  else
    cuda::detail::flash_attention_variant(var, q.bf(), rows, k.bf(), v.bf(), kv_rows, heads, kv_heads, hd, scale,
                                          out.bf(), 0);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

std::string variant_name(int hd, int var) {
  if (var >= 0) return cuda::detail::flash_attention_variant_name(hd, var);
  return std::string("default = ") +
         cuda::detail::flash_attention_variant_name(hd, cuda::detail::flash_attention_default_variant(hd));
}

// Every variant this build and device can run, the mma.sync ones (listed last) first, then -1 (the
// public entry point): a wgmma variant that faults (a sticky CUDA error) then cannot hide the others'
// results. MOSAIC_FA_VARIANTS=3,5 restricts the list (and drops -1) to isolate a variant.
std::vector<int> runnable_variants(int hd) {
  std::vector<int> v;
  if (const char* env = std::getenv("MOSAIC_FA_VARIANTS")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) {
        const int i = std::atoi(item.c_str());
        if (i >= 0 && cuda::detail::flash_attention_variant_available(hd, i)) v.push_back(i);
      }
    return v;
  }
  for (int i = cuda::detail::flash_attention_variants(hd) - 1; i >= 0; --i)
    if (cuda::detail::flash_attention_variant_available(hd, i)) v.push_back(i);
  v.push_back(-1);
  return v;
}

// run() with any mosaic::Error (a CUDA error from the launch or the kernel) reported as a failure of
// that variant instead of ending the test.
bool try_run(int var, const DevBuf& q, int64_t rows, const DevBuf& k, const DevBuf& v, int64_t kv_rows, int heads,
             int kv_heads, int hd, float scale, DevBuf& out) {
  try {
    run(var, q, rows, k, v, kv_rows, heads, kv_heads, hd, scale, out);
    return true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << variant_name(hd, var) << " rows " << rows << " kv_rows " << kv_rows << " heads " << heads
                  << "/" << kv_heads << " hd " << hd << ": " << e.what();
    return false;
  }
}

TEST(FlashAttention, ListVariants) {
  for (int hd : {64, 128}) {
    std::printf("flash_attention hd %d variants (default: %s):\n", hd,
                cuda::detail::flash_attention_variant_name(hd, cuda::detail::flash_attention_default_variant(hd)));
    for (int i = 0; i < cuda::detail::flash_attention_variants(hd); ++i)
      std::printf("  [%d] %-58s %s\n", i, cuda::detail::flash_attention_variant_name(hd, i),
                  cuda::detail::flash_attention_variant_available(hd, i) ? "available" : "NOT AVAILABLE in this build");
  }
  std::fflush(stdout);
}

struct Shape {
  int64_t rows, kv_rows;
  int heads, kv_heads, hd;
  float q_std = 1.f;  // > 1: peaky softmax
};

TEST(FlashAttention, UnsupportedHeadDimThrows) {
  EXPECT_THROW(cuda::flash_attention(nullptr, 4, nullptr, nullptr, 4, 2, 2, 96, 0.1f, nullptr, 0), Error);
  EXPECT_THROW(cuda::flash_attention(nullptr, 4, nullptr, nullptr, 4, 2, 2, 256, 0.1f, nullptr, 0), Error);
  EXPECT_THROW(cuda::flash_attention(nullptr, 4, nullptr, nullptr, 4, 6, 4, 64, 0.1f, nullptr, 0), Error);
}

TEST(FlashAttention, MatchesCpuOracle) {
  std::vector<Shape> shapes;
  for (int hd : {64, 128})
    for (auto [heads, kv_heads] : {std::pair{4, 4}, std::pair{28, 4}})
      for (int64_t rows : {1, 17, 128, 300, 1000})
        for (int64_t kv_rows : {1, 5, 64, 257, 2048}) shapes.push_back({rows, kv_rows, heads, kv_heads, hd});
  for (int hd : {64, 128}) {
    for (auto [rows, kv_rows] : {std::pair<int64_t, int64_t>{17, 5}, {128, 64}, {300, 257}, {1, 2048}, {1000, 2048}})
      shapes.push_back({rows, kv_rows, 32, 32, hd});
    shapes.push_back({300, 2048, 4, 4, hd, 4.f});   // peaky scores: the running max moves across tiles
    shapes.push_back({129, 1000, 8, 2, hd, 3.f});
  }

  int failures = 0;
  for (const Shape& sh : shapes) {
    const int64_t qn = sh.rows * sh.heads * sh.hd, kvn = sh.kv_rows * sh.kv_heads * sh.hd;
    const HostBf16 q = random_bf16(qn, sh.q_std), k = random_bf16(kvn, 1.f), v = random_bf16(kvn, 1.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(sh.hd));
    const std::vector<float> ref = oracle(q, sh.rows, k, v, sh.kv_rows, sh.heads, sh.kv_heads, sh.hd, scale);
    DevBuf dq(q.bits), dk(k.bits), dv(v.bits), dout(qn);
    for (int var : runnable_variants(sh.hd)) {
      if (!try_run(var, dq, sh.rows, dk, dv, sh.kv_rows, sh.heads, sh.kv_heads, sh.hd, scale, dout)) {
        if (++failures > 40) FAIL() << "too many failures";
        continue;
      }
      const double err = rel_err(dout.get(), ref);
      EXPECT_LT(err, 1e-2) << "rows " << sh.rows << " kv_rows " << sh.kv_rows << " heads " << sh.heads << "/"
                           << sh.kv_heads << " hd " << sh.hd << " q_std " << sh.q_std << ": "
                           << variant_name(sh.hd, var);
      if (!(err < 1e-2) && ++failures > 40) FAIL() << "too many failures";
    }
  }
}

// Columns of head h of a [rows, heads*hd] matrix, as a [rows, hd] one.
HostBf16 head_slice(const HostBf16& x, int64_t rows, int heads, int hd, int h) {
  HostBf16 s;
  s.bits.resize(static_cast<size_t>(rows) * hd);
  s.f.resize(s.bits.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int d = 0; d < hd; ++d) {
      const size_t src = static_cast<size_t>(r) * heads * hd + static_cast<size_t>(h) * hd + d;
      s.bits[r * hd + d] = x.bits[src];
      s.f[r * hd + d] = x.f[src];
    }
  return s;
}

// Large case: correctness on a few heads, then the time of every variant (median of 10).
void large_case(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd) {
  const int64_t qn = rows * heads * hd, kvn = kv_rows * kv_heads * hd;
  const HostBf16 q = random_bf16(qn, 1.f), k = random_bf16(kvn, 1.f), v = random_bf16(kvn, 1.f);
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  DevBuf dq(q.bits), dk(k.bits), dv(v.bits), dout(qn);

  // Oracle for the first and the last head only (a full CPU oracle would take minutes).
  const int group = heads / kv_heads;
  std::vector<int> check_heads = {0, heads - 1};
  std::vector<std::vector<float>> refs;
  for (int h : check_heads) {
    const HostBf16 qh = head_slice(q, rows, heads, hd, h), kh = head_slice(k, kv_rows, kv_heads, hd, h / group),
                   vh = head_slice(v, kv_rows, kv_heads, hd, h / group);
    refs.push_back(oracle(qh, rows, kh, vh, kv_rows, 1, 1, hd, scale));
  }

  const double flops = 4.0 * static_cast<double>(rows) * kv_rows * hd * heads;
  const double min_bytes = 2.0 * (2.0 * qn + 2.0 * kvn);  // q, k, v read once, out written once (bf16)
  std::printf("flash_attention rows %lld kv_rows %lld heads %d/%d hd %d: %.1f GFLOP, %.1f MB minimal traffic\n",
              static_cast<long long>(rows), static_cast<long long>(kv_rows), heads, kv_heads, hd, flops * 1e-9,
              min_bytes * 1e-6);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  for (int var : runnable_variants(hd)) {
    if (!try_run(var, dq, rows, dk, dv, kv_rows, heads, kv_heads, hd, scale, dout)) continue;
    const std::vector<float> got = dout.get();
    double worst = 0;
    for (size_t i = 0; i < check_heads.size(); ++i) {
      std::vector<float> gh(static_cast<size_t>(rows) * hd);
      for (int64_t r = 0; r < rows; ++r)
        for (int d = 0; d < hd; ++d)
          gh[r * hd + d] = got[static_cast<size_t>(r) * heads * hd + static_cast<size_t>(check_heads[i]) * hd + d];
      worst = std::max(worst, rel_err(gh, refs[i]));
    }
    bool nan = false;
    for (float x : got) nan |= !std::isfinite(x);
    EXPECT_FALSE(nan) << variant_name(hd, var) << ": unwritten or non-finite output";
    EXPECT_LT(worst, 1e-2) << variant_name(hd, var);

    auto launch = [&] {
      if (var < 0)
        cuda::flash_attention(dq.bf(), rows, dk.bf(), dv.bf(), kv_rows, heads, kv_heads, hd, scale, dout.bf(), 0);
      else
        cuda::detail::flash_attention_variant(var, dq.bf(), rows, dk.bf(), dv.bf(), kv_rows, heads, kv_heads, hd,
                                              scale, dout.bf(), 0);
    };
    for (int i = 0; i < 3; ++i) launch();  // warm-up
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> ms;
    for (int i = 0; i < 10; ++i) {
      CUDA_CHECK(cudaEventRecord(e0, 0));
      launch();
      CUDA_CHECK(cudaEventRecord(e1, 0));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float t = 0;
      CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
      ms.push_back(t);
    }
    CUDA_CHECK(cudaGetLastError());
    std::sort(ms.begin(), ms.end());
    const double med = 0.5 * (ms[4] + ms[5]);
    std::printf("  %-58s %8.3f ms  %6.1f TFLOP/s  (min %.3f ms)  err %.2e\n", variant_name(hd, var).c_str(), med,
                flops / (med * 1e-3) * 1e-12, ms[0], worst);
  }
  std::fflush(stdout);
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
}

TEST(FlashAttention, Large4096Heads32Hd128Timed) { large_case(4096, 4096, 32, 32, 128); }
TEST(FlashAttention, Large4096Gqa28x4Hd128Timed) { large_case(4096, 4096, 28, 4, 128); }
TEST(FlashAttention, Large4096Heads32Hd64Timed) { large_case(4096, 4096, 32, 32, 64); }

}  // namespace
}  // namespace mosaic
