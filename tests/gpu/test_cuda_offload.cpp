// The expert offload on the GPU: routed experts in pinned host memory, some in GPU slots filled
// by copies as the placement changes, the rest on the CPU while the device works. In cuda-fp32
// (an fp32 CPU kernel) every golden generation keeps its tokens under every policy; in bf16 the
// offloaded step's logits stay within bf16 noise of the all-GPU step's, and the token agreement
// of whole generations is printed.
#include <gtest/gtest.h>

#include <optional>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <numeric>

#include "backend/backend.h"
#include "decode/llada2_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "offload/expert_offload.h"
#include "reference_tensors.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;
using offload::ExpertOffload;
using offload::Policy;

TEST(CudaOffload, Fp32GoldensKeepTheirTokensUnderEveryPolicy) {
  for (const auto& dir : {test::fixtures_dir() / "llada2_tiny", test::source_dir() / "models" / "mosaic-moe-tiny"}) {
    auto gpu = make_cuda_backend(0, true);
    Model m(dir.string(), *gpu, {}, -1, true);
    const int E = static_cast<int>(m.config().moe.experts);
    const json g = json::parse(test::read_file(dir / "goldens.json"));
    // priced: tide with costs under which a refresh waits for some copies and sends the rest
    // behind (a copy and a CPU expert cost about the same, 4x in parallel).
    for (auto [policy, slots, tau, priced] :
         {std::tuple{Policy::Tide, E / 2, 1, false}, std::tuple{Policy::Tide, E / 2, 1, true},
          std::tuple{Policy::TideLagged, E / 2, 1, false}, std::tuple{Policy::Lru, E / 2, 0, false},
          std::tuple{Policy::Static, E / 4, 0, false}, std::tuple{Policy::Cpu, 0, 0, false}}) {
      ExpertOffload off(policy, E, slots, m.config().moe_layers(), tau);
      if (priced) off.set_costs({1e9, 1e6, 1e-3, 1e-4, 4});
      m.set_offload(&off);
      int64_t copies = 0;
      for (const json& c : g["cases"]) {
        Llada2Options o = test::llada2_golden_options(c);
        o.cache = CacheMode::Prefix;
        const auto r = llada2_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
        EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
            << dir.filename() << " " << c["name"] << " " << offload::policy_name(policy) << " slots " << slots;
      }
      int64_t behind = 0;
      for (int l : off.layers()) copies += off.stats(l).swaps, behind += off.stats(l).behind;
      if (policy != Policy::Static && policy != Policy::Cpu) EXPECT_GT(copies, 0) << offload::policy_name(policy);
      if (priced) EXPECT_GT(behind, 0);
      if (priced) EXPECT_LT(behind, copies);
      m.set_offload(nullptr);
    }
  }
}

TEST(CudaOffload, Bf16StepStaysWithinNoiseOfTheAllGpuStep) {
  const auto dir = test::source_dir() / "models" / "mosaic-moe-tiny";
  const json g = json::parse(test::read_file(dir / "goldens.json"));
  std::vector<int32_t> t = g["cases"][0]["prompt_tokens"].get<std::vector<int32_t>>();
  for (int32_t v : g["cases"][0]["output_tokens"]) t.push_back(v);
  t.resize(96);
  for (size_t i = 64; i < t.size(); i += 2) t[i] = 4095;  // the model's mask id
  std::vector<int32_t> pos(t.size());
  std::iota(pos.begin(), pos.end(), 0);
  StepRequest r = test::logits_request(t, pos);
  r.attention_block = 32;
  r.step_in_block = 0;
  // One backend at a time: the all-GPU run, then the offloaded ones. Two steps: the first
  // refreshes (tide-lagged runs the promoted experts on the CPU), the second (tau 1) uses them on
  // the GPU after their copies land and refreshes again.
  struct Run {
    std::vector<float> first, second;
    std::vector<std::vector<int32_t>> tokens;
  };
  auto run = [&](std::optional<Policy> policy, Run& out) {
    auto gpu = make_cuda_backend(0, false);
    Model m(dir.string(), *gpu, {}, -1, policy.has_value());
    ASSERT_EQ(m.config().mask_token_id, 4095);
    const int E = static_cast<int>(m.config().moe.experts);
    ExpertOffload off(policy.value_or(Policy::Tide), E, E / 2, m.config().moe_layers(), 1);
    if (policy) m.set_offload(&off);
    r.step_in_block = 0;
    out.first = m.step(r).logits;
    r.step_in_block = 1;
    out.second = m.step(r).logits;
    for (const json& c : g["cases"]) {
      Llada2Options o = test::llada2_golden_options(c);
      o.cache = CacheMode::Prefix;
      out.tokens.push_back(llada2_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o).tokens);
    }
  };
  Run all;
  run(std::nullopt, all);
  for (Policy policy : {Policy::Tide, Policy::TideLagged}) {
    Run part;
    run(policy, part);
    for (auto [got, want, step] : {std::tuple{&part.first, &all.first, 1}, std::tuple{&part.second, &all.second, 2}}) {
      const double err = test::rel_error(*got, *want);
      std::printf("bf16 %s vs all-GPU, step %d logits: rel error %.4f\n", offload::policy_name(policy), step, err);
      EXPECT_LT(err, 0.05) << offload::policy_name(policy) << " step " << step;
    }
    int64_t same = 0, total = 0, identical = 0;
    for (size_t i = 0; i < all.tokens.size(); ++i) {
      const auto& x = all.tokens[i];
      const auto& y = part.tokens[i];
      for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) same += x[i] == y[i];
      total += static_cast<int64_t>(std::max(x.size(), y.size()));
      identical += x == y;
    }
    std::printf("bf16 offloaded (%s, half the experts) vs all-GPU generations: %lld/%lld tokens equal, %lld/%zu "
                "identical\n", offload::policy_name(policy), static_cast<long long>(same),
                static_cast<long long>(total), static_cast<long long>(identical), g["cases"].size());
  }
}

}  // namespace
}  // namespace mosaic
