// The key/value cache ops of the CUDA backend (scatter_rows, cache_select) against the CPU
// backend, through the Backend interface, in both modes: `cuda` (bf16 activations) and
// `cuda-fp32`. The inputs are bf16-exact, so both modes and the CPU see the same numbers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "core/dtype.h"

namespace mosaic {
namespace {

std::mt19937 rng(4321);

std::vector<float> random_acts(size_t n) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(n);
  for (auto& v : x) v = bf16_to_f32(f32_to_bf16(dist(rng)));
  return x;
}

// Device buffers for one case, written and read through the backend's own stream (its
// kernels run on a non-blocking stream, which plain cudaMemcpy does not order against).
class DeviceBuffers {
 public:
  DeviceBuffers(Backend& be, bool fp32) : be_(be), fp32_(fp32) {}
  ~DeviceBuffers() {
    be_.synchronize();
    for (void* p : ptrs_) cudaFree(p);
  }
  // Activations in the mode's type.
  void* acts(const std::vector<float>& x) {
    if (fp32_) return upload(x.data(), x.size() * 4);
    std::vector<uint16_t> bits(x.size());
    for (size_t i = 0; i < x.size(); ++i) bits[i] = f32_to_bf16(x[i]);
    return upload(bits.data(), bits.size() * 2);
  }
  std::vector<float> get_acts(const void* p, size_t n) {
    std::vector<float> x(n);
    if (fp32_) {
      download(x.data(), p, n * 4);
    } else {
      std::vector<uint16_t> bits(n);
      download(bits.data(), p, n * 2);
      for (size_t i = 0; i < n; ++i) x[i] = bf16_to_f32(bits[i]);
    }
    return x;
  }
  template <typename T>
  T* raw(const std::vector<T>& x) {
    return static_cast<T*>(upload(x.data(), x.size() * sizeof(T)));
  }
  template <typename T>
  T* poisoned(size_t n) {  // all bits set: NaN as floats, -1 as ints
    return static_cast<T*>(alloc(n * sizeof(T)));
  }
  template <typename T>
  std::vector<T> get(const T* p, size_t n) {
    std::vector<T> x(n);
    download(x.data(), p, n * sizeof(T));
    return x;
  }

 private:
  void* alloc(size_t bytes) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
    CUDA_CHECK(cudaMemset(p, 0xFF, std::max<size_t>(bytes, 1)));
    CUDA_CHECK(cudaDeviceSynchronize());
    ptrs_.push_back(p);
    return p;
  }
  void* upload(const void* src, size_t bytes) {
    void* p = alloc(bytes);
    be_.upload(p, src, bytes);
    be_.synchronize();
    return p;
  }
  void download(void* dst, const void* src, size_t bytes) {
    be_.synchronize();
    be_.download(dst, src, bytes);
    be_.synchronize();
  }

  Backend& be_;
  bool fp32_;
  std::vector<void*> ptrs_;
};

TEST(CudaKvCache, ScatterRowsWritesTheCpuRows) {
  for (bool fp32 : {false, true}) {
    auto gpu = make_cuda_backend(0, fp32);
    // d = 4 and 6: rows that are not whole 16-byte words in one mode or both.
    for (int64_t d : {64, 6, 4}) {
      const int64_t rows = 37, cache_rows = 100;
      std::vector<int32_t> perm(cache_rows);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      const std::vector<int32_t> idx(perm.begin(), perm.begin() + rows);
      const auto x = random_acts(rows * d), cache = random_acts(cache_rows * d);
      std::vector<float> want = cache;
      cpu::scatter_rows(x.data(), d, idx.data(), rows, want.data());

      DeviceBuffers dev(*gpu, fp32);
      void* dx = dev.acts(x);
      void* dc = dev.acts(cache);
      gpu->scatter_rows(dx, d, dev.raw(idx), rows, dc);
      EXPECT_EQ(dev.get_acts(dc, want.size()), want) << (fp32 ? "fp32" : "bf16") << " d=" << d;
    }
  }
}

struct SelectCase {
  int64_t block_rows;
  int heads, kv_heads, hd;
  int64_t n;
  int kernel;
  double keep_fraction;
};

struct Selection {
  std::vector<float> scores;   // n pooled scores, then the heads*hd mean query
  std::vector<int32_t> rows;   // the kept source rows, in cache order
  std::vector<float> k_cache, v_cache;
};

struct SelectRun {
  std::vector<int32_t> outside;  // ascending
  Selection want, got;           // the CPU backend's, the CUDA backend's
};

// One layer's eviction on the CPU backend and on `gpu`. The block sits at a random place among
// L = n + block_rows rows; the outside rows are the others, in order. Value row i starts with
// (i / 256, i % 256), bf16-exact, so that the rows a cache holds can be read back from it.
SelectRun select_on_both(Backend& gpu, bool fp32, const SelectCase& c) {
  const int64_t L = c.n + c.block_rows, qd = int64_t{c.heads} * c.hd, kvd = int64_t{c.kv_heads} * c.hd;
  const int64_t keep = static_cast<int64_t>(static_cast<double>(c.n) * c.keep_fraction);
  const int64_t cache_rows = keep + 5;  // the rows past `keep` must be left as they were
  const int64_t block0 = static_cast<int64_t>(rng() % static_cast<uint32_t>(c.n + 1));
  std::vector<int32_t> outside;
  for (int64_t i = 0; i < L; ++i)
    if (i < block0 || i >= block0 + c.block_rows) outside.push_back(static_cast<int32_t>(i));
  const auto q = random_acts(c.block_rows * qd), k = random_acts(L * kvd);
  auto v = random_acts(L * kvd);
  for (int64_t i = 0; i < L; ++i) {
    v[i * kvd] = static_cast<float>(i / 256);
    v[i * kvd + 1] = static_cast<float>(i % 256);
  }
  const auto k_cache0 = random_acts(cache_rows * kvd), v_cache0 = random_acts(cache_rows * kvd);
  auto rows_of = [&](const std::vector<float>& v_cache) {
    std::vector<int32_t> rows(keep);
    for (int64_t r = 0; r < keep; ++r)
      rows[r] = static_cast<int32_t>(v_cache[r * kvd] * 256 + v_cache[r * kvd + 1]);
    return rows;
  };

  Selection want;
  {
    auto cpu = make_cpu_backend();
    want.scores.assign(c.n + qd, NAN);
    std::vector<int32_t> kept(c.n, -1);
    want.k_cache = k_cache0;
    want.v_cache = v_cache0;
    cpu->cache_select(q.data(), c.block_rows, k.data(), v.data(), outside.data(), c.n, c.heads, c.kv_heads, c.hd,
                      c.kernel, keep, want.scores.data(), kept.data(), want.k_cache.data(), want.v_cache.data());
    want.rows = rows_of(want.v_cache);
  }
  Selection got;
  {
    DeviceBuffers dev(gpu, fp32);
    void* dq = dev.acts(q);
    void* dk = dev.acts(k);
    void* dv = dev.acts(v);
    void* dkc = dev.acts(k_cache0);
    void* dvc = dev.acts(v_cache0);
    float* scores = dev.poisoned<float>(c.n + qd);
    int32_t* kept = dev.poisoned<int32_t>(c.n);
    gpu.cache_select(dq, c.block_rows, dk, dv, dev.raw(outside), c.n, c.heads, c.kv_heads, c.hd, c.kernel, keep,
                     scores, kept, dkc, dvc);
    got.scores = dev.get(scores, c.n + qd);
    got.k_cache = dev.get_acts(dkc, k_cache0.size());
    got.v_cache = dev.get_acts(dvc, v_cache0.size());
    got.rows = rows_of(got.v_cache);
  }
  // Whatever rows were kept, each cache row must be that row's key (its value row names it).
  for (int64_t r = 0; r < keep; ++r)
    for (int64_t e = 0; e < kvd; ++e)
      if (got.k_cache[r * kvd + e] != k[got.rows[r] * kvd + e]) {
        ADD_FAILURE() << "cache row " << r << " is not the key of row " << got.rows[r];
        return {outside, want, got};
      }
  return {outside, want, got};
}

std::string describe(const SelectCase& c) {
  return "block " + std::to_string(c.block_rows) + " heads " + std::to_string(c.heads) + "/" +
         std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) + " n " + std::to_string(c.n) + " kernel " +
         std::to_string(c.kernel) + " keep " + std::to_string(c.keep_fraction);
}

std::vector<SelectCase> select_cases() {
  std::vector<SelectCase> cases;
  for (int64_t n : {1, 7, 100, 1000, 5000})
    for (int kernel : {1, 3, 5}) cases.push_back({8, 4, 2, 16, n, kernel, 0.5});
  cases.push_back({8, 4, 2, 16, 300, 3, 1.0});     // keep everything
  cases.push_back({8, 4, 2, 16, 300, 3, 0.0});     // keep nothing
  cases.push_back({32, 40, 8, 128, 3000, 3, 0.3});  // more heads than a warp's lanes, GQA 5:1
  return cases;
}

// cuda-fp32 computes the scores in the CPU's order of operations, so everything is equal: the
// scores and the mean query bit for bit, the kept rows, both caches (and the rows past keep).
TEST(CudaKvCache, CacheSelectFp32EqualsTheCpuBackend) {
  auto gpu = make_cuda_backend(0, true);
  for (const SelectCase& c : select_cases()) {
    const SelectRun run = select_on_both(*gpu, true, c);
    const Selection &want = run.want, &got = run.got;
    EXPECT_EQ(got.scores, want.scores) << describe(c);
    EXPECT_EQ(got.rows, want.rows) << describe(c);
    EXPECT_EQ(got.k_cache, want.k_cache) << describe(c);
    EXPECT_EQ(got.v_cache, want.v_cache) << describe(c);
  }
}

// bf16 activations: the pooled scores to a tolerance, and the kept rows the CPU's but for rows
// whose score is within that tolerance of the cut (the lowest score kept).
TEST(CudaKvCache, CacheSelectBf16KeepsTheCpuRowsExceptAtNearTies) {
  auto gpu = make_cuda_backend(0, false);
  for (const SelectCase& c : select_cases()) {
    const SelectRun run = select_on_both(*gpu, false, c);
    const Selection &want = run.want, &got = run.got;
    ASSERT_EQ(got.rows.size(), want.rows.size()) << describe(c);
    double scale = 1.0;
    for (int64_t j = 0; j < c.n; ++j) scale = std::max(scale, std::abs(static_cast<double>(want.scores[j])));
    const double tol = 1e-4 * scale;
    for (int64_t j = 0; j < c.n; ++j) ASSERT_NEAR(got.scores[j], want.scores[j], tol) << describe(c) << " j=" << j;
    EXPECT_TRUE(std::is_sorted(got.rows.begin(), got.rows.end())) << describe(c);
    if (want.rows.empty()) continue;
    auto score_of = [&](int32_t row) {  // the CPU's pooled score of an outside row
      const auto j = std::lower_bound(run.outside.begin(), run.outside.end(), row) - run.outside.begin();
      return static_cast<double>(want.scores[static_cast<size_t>(j)]);
    };
    double cut = INFINITY;
    for (int32_t row : want.rows) cut = std::min(cut, score_of(row));
    std::vector<int32_t> differ;  // kept by one backend only
    std::set_symmetric_difference(want.rows.begin(), want.rows.end(), got.rows.begin(), got.rows.end(),
                                  std::back_inserter(differ));
    for (int32_t row : differ)
      EXPECT_LE(std::abs(score_of(row) - cut), 2 * tol) << describe(c) << ": row " << row << " kept by one side only";
  }
}

}  // namespace
}  // namespace mosaic
