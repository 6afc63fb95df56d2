// Each CUDA kernel against its CPU oracle on fresh random inputs, poisoned outputs first.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/lt_matmul.h"
#include "bf16_buffers.h"
#include "core/dtype.h"

namespace mosaic {
namespace {

std::mt19937 rng(1234);

// bf16-rounded random values, kept both as bf16 bits and as the floats they represent.
struct HostBf16 {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};

HostBf16 random_bf16(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.f, scale);
  HostBf16 h;
  h.bits.resize(n);
  h.f.resize(n);
  for (size_t i = 0; i < n; ++i) {
    h.bits[i] = f32_to_bf16(dist(rng));
    h.f[i] = bf16_to_f32(h.bits[i]);
  }
  return h;
}

using test::Dev;

std::vector<float> to_float(const std::vector<uint16_t>& bits) {
  std::vector<float> f(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) f[i] = bf16_to_f32(bits[i]);
  return f;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * static_cast<double>(got[i] - ref[i]);
    den += ref[i] * static_cast<double>(ref[i]);
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

cuda::bf16* B(uint16_t* p) { return reinterpret_cast<cuda::bf16*>(p); }

TEST(CudaKernels, RmsNorm) {
  for (int64_t d : {64, 4096, 3584}) {
    const int64_t rows = 37;
    auto x = random_bf16(rows * d, 3.f), w = random_bf16(d);
    Dev<uint16_t> dx(x.bits), dw(w.bits), dy(rows * d);
    cuda::rms_norm(B(dx.p), rows, d, B(dw.p), 1e-5f, B(dy.p), 0);
    std::vector<float> ref(rows * d);
    cpu::rms_norm(x.f.data(), rows, d, w.f.data(), 1e-5f, ref.data());
    EXPECT_LT(rel_err(to_float(dy.get()), ref), 1e-2) << "d=" << d;
  }
}

TEST(CudaKernels, Rope) {
  const int heads = 4, hd = 128;
  const int64_t rows = 19, pos0 = 70000;  // large positions: the fp32 angle must match
  auto x = random_bf16(rows * heads * hd);
  auto inv = rope_inv_freq(500000.0, hd);
  Dev<uint16_t> dx(x.bits);
  Dev<float> dinv(inv);
  cuda::rope(B(dx.p), rows, heads, hd, pos0, dinv.p, nullptr, 0);
  std::vector<float> ref = x.f;
  cpu::rope(ref.data(), rows, heads, hd, pos0, inv.data());
  EXPECT_LT(rel_err(to_float(dx.get()), ref), 1e-2);

  // Explicit positions (the masked last layer's rows): scattered, unordered, large.
  std::vector<int32_t> positions(rows);
  for (int64_t i = 0; i < rows; ++i) positions[i] = static_cast<int32_t>((i * 7919 + 13) % 1000003);
  Dev<uint16_t> dy(x.bits);
  Dev<int32_t> dpos(positions);
  cuda::rope(B(dy.p), rows, heads, hd, 0, dinv.p, dpos.p, 0);
  ref = x.f;
  cpu::rope(ref.data(), rows, heads, hd, 0, inv.data(), positions.data());
  EXPECT_LT(rel_err(to_float(dy.get()), ref), 1e-2);
}

// The fast forms (row in registers; 16-byte rope with shared angles) keep the plain forms'
// arithmetic, so they must agree bit for bit, not just within bf16 tolerance: a step's output
// does not change with the kernel version.
TEST(CudaKernels, RmsNormRegisterFormEqualsTheTwoPassFormBitForBit) {
  for (int64_t d : {64, 256, 3584, 4096, 5120, 16384}) {
    const int64_t rows = 23;
    auto x = random_bf16(rows * d, 3.f), w = random_bf16(d);
    Dev<uint16_t> dx(x.bits), dw(w.bits), fast(rows * d), plain(rows * d);
    cuda::rms_norm(B(dx.p), rows, d, B(dw.p), 1e-6f, B(fast.p), 0);
    cuda::rms_norm_two_pass(B(dx.p), rows, d, B(dw.p), 1e-6f, B(plain.p), 0);
    EXPECT_EQ(fast.get(), plain.get()) << "d=" << d;
  }
}

TEST(CudaKernels, RopeVectorFormEqualsThePairwiseFormBitForBit) {
  struct Shape {
    int heads, hd;
  };
  // Dream-7B's q and k, LLaDA-8B's, the shipped model's, the test fixture's.
  for (Shape sh : {Shape{28, 128}, Shape{4, 128}, Shape{32, 128}, Shape{4, 64}, Shape{2, 16}}) {
    const int64_t rows = 37;
    auto x = random_bf16(rows * sh.heads * sh.hd);
    auto inv = rope_inv_freq(1000000.0, sh.hd);
    Dev<float> dinv(inv);
    std::vector<int32_t> positions(rows);
    for (int64_t i = 0; i < rows; ++i) positions[i] = static_cast<int32_t>((i * 7919 + 13) % 1048576);
    Dev<int32_t> dpos(positions);
    for (const int32_t* pos : {static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(dpos.p)}) {
      Dev<uint16_t> fast(x.bits), plain(x.bits);
      cuda::rope(B(fast.p), rows, sh.heads, sh.hd, 1000000, dinv.p, pos, 0);
      cuda::rope_pairwise(B(plain.p), rows, sh.heads, sh.hd, 1000000, dinv.p, pos, 0);
      EXPECT_EQ(fast.get(), plain.get()) << "heads " << sh.heads << " hd " << sh.hd << (pos ? " positions" : " pos0");
    }
  }
}

TEST(CudaKernels, SwiGluEmbedGather) {
  const int64_t n = 8 * 1000;
  auto g = random_bf16(n, 2.f), u = random_bf16(n);
  Dev<uint16_t> dg(g.bits), du(u.bits);
  cuda::swiglu(B(dg.p), B(du.p), n, 0);
  std::vector<float> ref = g.f;
  cpu::swiglu(ref.data(), u.f.data(), n);
  EXPECT_LT(rel_err(to_float(dg.get()), ref), 1e-2);

  const int64_t rows = 50, d = 128, table_rows = 300;
  auto table = random_bf16(table_rows * d);
  std::vector<int32_t> ids(rows);
  for (auto& i : ids) i = static_cast<int32_t>(rng() % table_rows);
  Dev<uint16_t> dt(table.bits), dout(rows * d);
  Dev<int32_t> dids(ids);
  cuda::embed(dids.p, rows, B(dt.p), d, B(dout.p), 0);
  std::vector<float> eref(rows * d);
  cpu::embed(ids.data(), rows, table.f.data(), d, eref.data());
  EXPECT_EQ(rel_err(to_float(dout.get()), eref), 0.0);  // a copy is exact
}

TEST(CudaKernels, MatmulThroughCublasLt) {
  void* ws;
  CUDA_CHECK(cudaMalloc(&ws, 32 << 20));
  {
    cuda::LtMatmul lt(0, ws, 32 << 20);
    for (auto [rows, k, n] : {std::tuple<int64_t, int64_t, int64_t>{33, 64, 96}, {256, 512, 1024}, {7, 128, 1000}}) {
      for (bool bias : {false, true})
        for (bool f32 : {false, true}) {
          if (bias && f32) continue;  // not a combination the models use (and refused)
          auto a = random_bf16(rows * k), w = random_bf16(n * k, 0.05f), b = random_bf16(n);
          Dev<uint16_t> da(a.bits), dw(w.bits), db(b.bits);
          std::vector<float> ref(rows * n);
          cpu::matmul(a.f.data(), rows, k, w.f.data(), bias ? b.f.data() : nullptr, n, ref.data());
          std::vector<float> got;
          if (f32) {
            Dev<float> dc(rows * n);
            lt.run(da.p, rows, k, dw.p, bias ? db.p : nullptr, n, dc.p, true);
            got = dc.get();
          } else {
            Dev<uint16_t> dc(rows * n);
            lt.run(da.p, rows, k, dw.p, bias ? db.p : nullptr, n, dc.p, false);
            got = to_float(dc.get());
          }
          EXPECT_LT(rel_err(got, ref), f32 ? 1e-3 : 1e-2) << rows << "x" << k << "x" << n << " bias=" << bias;
        }
    }
  }
  cudaFree(ws);
}

// Random logits with a three-way tie in row 5 (the first index must win), on the host and
// the device, and a kernel's tokens and confidences against the CPU kernel's.
struct SampleRowsCase {
  static constexpr int64_t rows = 24, vocab = 50000;
  std::vector<float> logits = std::vector<float>(rows * vocab);
  std::vector<int32_t> pos = std::vector<int32_t>(rows);
  SampleRowsCase() {
    std::normal_distribution<float> dist(0.f, 3.f);
    for (auto& l : logits) l = dist(rng);
    for (int64_t v = 0; v < 3; ++v) logits[5 * vocab + 100 + v] = 40.f;
    for (int64_t i = 0; i < rows; ++i) pos[i] = static_cast<int32_t>(1000 + 3 * i);
  }
  template <typename Kernel>
  void expect_cpu_results(Kernel kernel, const SampleParams& p, double abs_tol, double rel_tol) const {
    Dev<float> dl(logits);
    Dev<int32_t> dpos(pos), dtok(rows);
    Dev<float> dconf(rows);
    kernel(dl.p, rows, vocab, dpos.p, p, dtok.p, dconf.p, cudaStream_t{});
    std::vector<int32_t> tok(rows);
    std::vector<float> conf(rows);
    cpu::sample_rows(logits.data(), rows, vocab, pos.data(), p, tok.data(), conf.data());
    auto gt = dtok.get();
    auto gc = dconf.get();
    EXPECT_EQ(gt, tok) << "temperature " << p.temperature << " confidence " << static_cast<int>(p.confidence);
    for (int64_t i = 0; i < rows; ++i) EXPECT_NEAR(gc[i], conf[i], abs_tol + rel_tol * std::abs(conf[i]));
    if (p.temperature == 0.0) EXPECT_EQ(gt[5], 100);
  }
};

TEST(CudaKernels, SampleRowsGivesTheCpuTokensOnTheSameLogits) {
  SampleRowsCase c;
  for (double temp : {0.0, 0.7, 1.0})
    for (Confidence conf : {Confidence::Probability, Confidence::Random}) {
      SampleParams p;
      p.temperature = temp;
      p.confidence = conf;
      p.seed = 42;
      p.step = 7;
      c.expect_cpu_results(cuda::sample_rows, p, 1e-5, 1e-4);
    }
}

// The greedy kernel reads rows four floats at a time where it can: a vocabulary that is not a
// multiple of four (rows not 16-byte aligned) takes its scalar loop, with the same answers.
TEST(CudaKernels, GreedySampleRowsOnAnOddVocabulary) {
  const int64_t rows = 9, vocab = 1001;
  std::normal_distribution<float> dist(0.f, 3.f);
  std::vector<float> logits(rows * vocab);
  for (auto& l : logits) l = dist(rng);
  logits[4 * vocab + 999] = logits[4 * vocab + 1000] = 50.f;  // a tie: the first index wins
  std::vector<int32_t> pos(rows, 3), tok(rows);
  std::vector<float> conf(rows);
  SampleParams p;
  cpu::sample_rows(logits.data(), rows, vocab, pos.data(), p, tok.data(), conf.data());
  Dev<float> dl(logits), dconf(rows);
  Dev<int32_t> dpos(pos), dtok(rows);
  cuda::sample_rows(dl.p, rows, vocab, dpos.p, p, dtok.p, dconf.p, cudaStream_t{});
  EXPECT_EQ(dtok.get(), tok);
  EXPECT_EQ(tok[4], 999);
  const auto gc = dconf.get();
  for (int64_t i = 0; i < rows; ++i) EXPECT_NEAR(gc[i], conf[i], 1e-5 + 1e-4 * conf[i]) << "row " << i;
}

// Equal maxima in the float4 path: in one thread's four running states (columns 4k+1 and 4k+3)
// and in different threads (far apart): the lowest index wins, as torch.argmax's.
TEST(CudaKernels, GreedySampleRowsBreaksTiesByTheFirstIndex) {
  const int64_t rows = 3, vocab = 8192;
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> logits(rows * vocab);
  for (auto& l : logits) l = dist(rng);
  const std::vector<std::vector<int64_t>> ties = {{4 * 700 + 3, 4 * 700 + 1}, {8000, 6, 4097}, {5, 4}};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c : ties[static_cast<size_t>(r)]) logits[r * vocab + c] = 20.f;
  std::vector<int32_t> pos(rows, 0), tok(rows);
  std::vector<float> conf(rows);
  SampleParams p;
  cpu::sample_rows(logits.data(), rows, vocab, pos.data(), p, tok.data(), conf.data());
  Dev<float> dl(logits), dconf(rows);
  Dev<int32_t> dpos(pos), dtok(rows);
  cuda::sample_rows(dl.p, rows, vocab, dpos.p, p, dtok.p, dconf.p, cudaStream_t{});
  EXPECT_EQ(dtok.get(), (std::vector<int32_t>{4 * 700 + 1, 6, 4}));
  EXPECT_EQ(tok, (std::vector<int32_t>{4 * 700 + 1, 6, 4}));
  const auto gc = dconf.get();
  for (int64_t i = 0; i < rows; ++i) EXPECT_NEAR(gc[i], conf[i], 1e-5 + 1e-4 * conf[i]) << "row " << i;
}

TEST(CudaKernels, DreamSampleRowsGivesTheCpuTokensOnTheSameLogits) {
  SampleRowsCase c;
  for (double temp : {0.0, 0.5, 1.0})
    for (Confidence conf : {Confidence::Probability, Confidence::Margin, Confidence::NegEntropy}) {
      SampleParams p;
      p.rule = TokenRule::Dream;
      p.confidence = conf;
      p.temperature = temp;
      p.seed = 42;
      p.step = 7;
      c.expect_cpu_results(cuda::dream_sample_rows, p, 1e-6, 1e-5);
    }
}

TEST(CudaKernels, RankRowsMatchesTheStableCpuOrder) {
  for (int64_t n : {1, 2, 31, 32, 33, 1000, 8192}) {
    std::vector<float> conf(n);
    for (auto& c : conf) c = static_cast<float>(rng() % 50) / 50.f;  // many ties on purpose
    Dev<float> dc(conf);
    Dev<int32_t> dord(n);
    cuda::rank_rows(dc.p, n, dord.p, 0);
    std::vector<int32_t> ref(n);
    cpu::rank_rows(conf.data(), n, ref.data());
    EXPECT_EQ(dord.get(), ref) << "n=" << n;
  }
}

// A batch's sequences ranked apart in one launch: each range's order equals the CPU's on it
// alone (indices within the range), empty ranges skipped, other rows untouched.
TEST(CudaKernels, RankRowsInRangesMatchesEachRangeAlone) {
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 32}, {32, 0}, {32, 1}, {33, 17}, {50, 1000}, {1050, 3}};
  const int64_t n = 1060;  // rows 1053.. belong to no range
  std::vector<float> conf(n);
  for (auto& c : conf) c = static_cast<float>(rng() % 40) / 40.f;  // ties on purpose
  std::vector<int64_t> first, count;
  std::vector<int32_t> ref(n, -7);
  for (auto [f, c] : ranges) {
    first.push_back(f);
    count.push_back(c);
    if (c > 0) cpu::rank_rows(conf.data() + f, c, ref.data() + f);
  }
  Dev<float> dc(conf);
  Dev<int32_t> dord(std::vector<int32_t>(n, -7));
  cuda::rank_rows_in_ranges(dc.p, first.data(), count.data(), static_cast<int64_t>(ranges.size()), dord.p, 0);
  EXPECT_EQ(dord.get(), ref);
}

TEST(CudaKernels, CfgCombine) {
  const int64_t n = 10007;
  std::vector<float> c(n), u(n);
  for (auto& v : c) v = static_cast<float>(rng() % 1000) / 100.f;
  for (auto& v : u) v = static_cast<float>(rng() % 1000) / 100.f;
  Dev<float> dc(c), du(u);
  cuda::cfg_combine(dc.p, du.p, n, 1.5f, 0);
  cpu::cfg_combine(c.data(), u.data(), n, 1.5f);
  EXPECT_LT(rel_err(dc.get(), c), 1e-6);
}

}  // namespace
}  // namespace mosaic
