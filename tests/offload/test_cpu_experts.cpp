// The CPU's share of an offloaded MoE layer against the CPU backend's expert reference: bf16 and
// fp32 weights, few rows per expert (the dot kernels, AVX-512 and portable) and many (the GEMM
// path), sizes with tails, experts on the GPU left out.
#include <gtest/gtest.h>
#include <omp.h>

#include <random>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "offload/cpu_experts.h"

namespace mosaic {
namespace {

struct Case {
  int64_t rows, d, ffn;
  int experts, top_k;
};

TEST(CpuExperts, MatchTheReferenceExperts) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (bool simd : {true, false})
    for (const Case& c : {Case{1, 64, 40, 8, 2}, Case{5, 72, 40, 4, 2}, Case{40, 256, 40, 8, 4},
                          Case{64, 48, 24, 4, 3}, Case{3, 512, 384, 4, 2},
                          Case{24, 512, 384, 4, 2}}) {
      offload::cpu_experts_use_simd(simd);
      const size_t wn = static_cast<size_t>(c.d * c.ffn);
      // bf16-exact weights and inputs, so that both weight types hold the same numbers.
      std::vector<std::vector<uint16_t>> wb(3 * c.experts, std::vector<uint16_t>(wn));
      std::vector<std::vector<float>> wf(3 * c.experts, std::vector<float>(wn));
      std::vector<const void*> pb, pf;
      for (int i = 0; i < 3 * c.experts; ++i) {
        for (size_t j = 0; j < wn; ++j) {
          wb[i][j] = f32_to_bf16(0.1f * nd(rng));
          wf[i][j] = bf16_to_f32(wb[i][j]);
        }
        pb.push_back(wb[i].data());
        pf.push_back(wf[i].data());
      }
      std::vector<uint16_t> hb(static_cast<size_t>(c.rows * c.d));
      std::vector<float> hf(hb.size());
      for (size_t j = 0; j < hb.size(); ++j) hf[j] = bf16_to_f32(hb[j] = f32_to_bf16(nd(rng)));
      std::vector<int32_t> ids(static_cast<size_t>(c.rows * c.top_k));
      std::vector<float> w(ids.size());
      for (int64_t r = 0; r < c.rows; ++r)
        for (int j = 0; j < c.top_k; ++j) {
          ids[r * c.top_k + j] = static_cast<int32_t>((r * 3 + j * 5 + j) % c.experts);
          w[r * c.top_k + j] = 0.5f + 0.1f * static_cast<float>(j);
        }
      // Expert 1 is "on the GPU": the CPU part leaves it out, and so does the reference.
      std::vector<uint8_t> on_gpu(c.experts, 0), on_cpu(c.experts, 1);
      on_gpu[1] = 1;
      on_cpu[1] = 0;
      std::vector<float> ref(hf.size(), 0.f), ws(static_cast<size_t>(c.rows * (2 * c.d + 2 * c.ffn + 2 * c.top_k)));
      cpu::moe_experts(hf.data(), c.rows, c.d, ids.data(), w.data(), c.top_k, c.ffn, pf, ref.data(), ws.data(),
                       on_cpu.data());
      std::vector<float> yb(hf.size()), yf(hf.size());
      const int64_t pairs = offload::cpu_experts(hb.data(), c.rows, c.d, ids.data(), w.data(), c.top_k, c.ffn, pb,
                                                 true, on_gpu.data(), yb.data());
      offload::cpu_experts(hf.data(), c.rows, c.d, ids.data(), w.data(), c.top_k, c.ffn, pf, false, on_gpu.data(),
                           yf.data());
      int64_t want_pairs = 0;
      for (int32_t e : ids) want_pairs += e != 1;
      EXPECT_EQ(pairs, want_pairs);
      double err_b = 0, err_f = 0, norm = 0;
      for (size_t j = 0; j < ref.size(); ++j) {
        err_b = std::max(err_b, static_cast<double>(std::abs(yb[j] - ref[j])));
        err_f = std::max(err_f, static_cast<double>(std::abs(yf[j] - ref[j])));
        norm = std::max(norm, static_cast<double>(std::abs(ref[j])));
      }
      EXPECT_GT(norm, 0.1);
      EXPECT_LT(err_b, 1e-4 * norm) << "bf16 rows " << c.rows << " simd " << simd;
      EXPECT_LT(err_f, 1e-4 * norm) << "fp32 rows " << c.rows << " simd " << simd;
      // The pieces of an expert go to whichever thread: the sum is the same on one thread.
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      std::vector<float> one_b(hf.size()), one_f(hf.size());
      offload::cpu_experts(hb.data(), c.rows, c.d, ids.data(), w.data(), c.top_k, c.ffn, pb, true, on_gpu.data(),
                           one_b.data());
      offload::cpu_experts(hf.data(), c.rows, c.d, ids.data(), w.data(), c.top_k, c.ffn, pf, false, on_gpu.data(),
                           one_f.data());
      omp_set_num_threads(threads);
      EXPECT_EQ(one_b, yb) << "rows " << c.rows;
      EXPECT_EQ(one_f, yf) << "rows " << c.rows;
    }
  offload::cpu_experts_use_simd(true);
}

}  // namespace
}  // namespace mosaic
