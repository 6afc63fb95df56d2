// The expert offload on a simulated device (the CPU backend with a placement map: the "GPU"
// slots hold copies made as the placement changes, the other experts run through the offload's
// CPU kernel from their host copies): it moves experts, never routing,
// so every golden generation keeps its tokens under every policy, and what it reports follows
// the policy (all-CPU hits nothing; refreshing hits more than the static placement).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "backend/backend.h"
#include "decode/llada2_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "offload/expert_offload.h"
#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;
using offload::ExpertOffload;
using offload::Policy;

double hit_rate(const ExpertOffload& o) {
  int64_t pairs = 0, gpu = 0;
  for (int l : o.layers()) pairs += o.stats(l).pairs, gpu += o.stats(l).gpu_pairs;
  return static_cast<double>(gpu) / static_cast<double>(pairs);
}

struct Seen {
  double hit_rate = 0;
  int64_t copies = 0, behind = 0;
};

// Every golden case of `dir` under `o` (uncached and with the prefix cache, or the prefix cache
// only); returns what the offload saw. even_costs: a copy costs as much as a CPU expert (so a
// tide refresh waits for some copies and sends the others behind), instead of next to nothing.
Seen run_goldens(const std::filesystem::path& dir, Policy policy, int slots, int tau, bool uncached = true,
                 bool even_costs = false) {
  auto be = make_cpu_backend();
  const int experts = static_cast<int>(Model(dir.string(), *be).config().moe.experts);
  // The routed experts in "host memory" and `slots` of each layer's in "GPU slots": the resident
  // ones run from the slots' copies, the others through the offload's CPU kernel.
  Model m(dir.string(), *be, {}, -1, slots < experts);
  ExpertOffload off(policy, experts, slots, m.config().moe_layers(), tau);
  if (even_costs) off.set_costs({1e9, 1e6, 1e-3, 1e-4, 4});
  else off.set_costs({25e9, 3.0 * 4 * m.config().d_model * m.config().moe.ffn_hidden, 20e-6, 2e-6});
  m.set_offload(&off);
  const json g = json::parse(test::read_file(dir / "goldens.json"));
  for (CacheMode cache : {CacheMode::None, CacheMode::Prefix})
    for (const json& c : g["cases"]) {
      if (cache == CacheMode::None && !uncached) continue;
      Llada2Options o = test::llada2_golden_options(c);
      o.cache = cache;
      const auto r = llada2_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), o);
      EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>())
          << dir.filename() << " " << c["name"] << " " << offload::policy_name(policy) << " slots " << slots
          << " tau " << tau << " cache " << cache_mode_name(cache);
    }
  if (offload::refreshes_on_interval(policy) && tau == 0) EXPECT_TRUE(off.tau_choice().has_value()) << "auto never chose a tau";
  Seen seen{hit_rate(off)};
  for (int l : off.layers()) seen.copies += off.stats(l).swaps, seen.behind += off.stats(l).behind;
  std::printf("%s %s slots %d tau %d: hit rate %.3f, %lld copies, %lld behind\n", dir.filename().c_str(),
              offload::policy_name(policy), slots, tau, seen.hit_rate, static_cast<long long>(seen.copies),
              static_cast<long long>(seen.behind));
  return seen;
}

TEST(OffloadLossless, TheFixturesGoldensKeepTheirTokensUnderEveryPolicy) {
  const auto dir = test::fixtures_dir() / "llada2_tiny";
  auto be = make_cpu_backend();
  const int E = static_cast<int>(Model(dir.string(), *be).config().moe.experts);
  EXPECT_EQ(run_goldens(dir, Policy::Cpu, 0, 0).hit_rate, 0.0);
  const Seen fixed = run_goldens(dir, Policy::Static, E / 2, 0);
  const Seen tide = run_goldens(dir, Policy::Tide, E / 2, 1);
  EXPECT_EQ(tide.behind, 0);  // copies next to free: the layer waits for every one
  run_goldens(dir, Policy::Tide, E / 2, 0);
  const Seen lagged = run_goldens(dir, Policy::TideLagged, E / 2, 1);
  EXPECT_EQ(lagged.behind, lagged.copies);
  const Seen split = run_goldens(dir, Policy::Tide, E / 2, 1, true, true);
  EXPECT_GT(split.behind, 0);
  EXPECT_LT(split.behind, split.copies);
  run_goldens(dir, Policy::Lru, E / 2, 0);
  EXPECT_GT(tide.hit_rate, fixed.hit_rate);
  EXPECT_LT(lagged.hit_rate, tide.hit_rate);  // each promoted expert's pairs ran on the CPU at its refresh step
  EXPECT_EQ(run_goldens(dir, Policy::Tide, E, 2).hit_rate, 1.0);
}

TEST(OffloadLossless, TheShippedModelsGoldensKeepTheirTokens) {
  const auto dir = test::source_dir() / "models" / "mosaic-moe-tiny";
  // The prefix cache only: its steps run the block's rows, so the uncached run's cost is saved.
  const Seen fixed = run_goldens(dir, Policy::Static, 32, 0, false);
  const Seen tide = run_goldens(dir, Policy::Tide, 32, 4, false);
  run_goldens(dir, Policy::TideLagged, 32, 4, false);
  EXPECT_GT(run_goldens(dir, Policy::Tide, 32, 4, false, true).behind, 0);
  run_goldens(dir, Policy::Lru, 32, 0, false);
  EXPECT_GT(tide.hit_rate, fixed.hit_rate);
}

// One step's logits, offloaded (half the experts, a refresh at this step) against all resident:
// the same sums in another order, so equal to fp32 rounding.
TEST(OffloadLossless, AStepsLogitsEqualTheAllResidentStepsToRounding) {
  const auto dir = test::source_dir() / "models" / "mosaic-moe-tiny";
  auto be = make_cpu_backend(), be2 = make_cpu_backend();
  Model all(dir.string(), *be), part(dir.string(), *be2, {}, -1, true);
  const int E = static_cast<int>(all.config().moe.experts);
  ExpertOffload off(Policy::Tide, E, E / 2, all.config().moe_layers(), 2);
  part.set_offload(&off);
  const json g = json::parse(test::read_file(dir / "goldens.json"));
  std::vector<int32_t> t = g["cases"][0]["prompt_tokens"].get<std::vector<int32_t>>();
  for (int32_t v : g["cases"][0]["output_tokens"]) t.push_back(v);
  t.resize(96);
  for (size_t i = 64; i < t.size(); i += 2) t[i] = static_cast<int32_t>(all.config().mask_token_id);
  std::vector<int32_t> pos(t.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  StepRequest r;
  r.tokens = &t;
  r.head_pos = pos;
  r.emit_logits = true;
  r.attention_block = 32;
  r.step_in_block = 0;
  const auto a = all.step(r).logits, b = part.step(r).logits;
  ASSERT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += a[i] * a[i];
  EXPECT_LT(std::sqrt(num / den), 1e-5);
  int64_t cpu_pairs = 0;
  for (int l : off.layers()) cpu_pairs += off.stats(l).pairs - off.stats(l).gpu_pairs;
  EXPECT_GT(cpu_pairs, 0);  // the CPU part ran
}

TEST(OffloadOptions, BadFlagsAreRefusedWithTheFlagNamed) {
  auto be = make_cpu_backend();
  const io::ModelConfig c = Model((test::fixtures_dir() / "llada2_tiny").string(), *be).config();
  const double expert = 3.0 * 2 * c.d_model * c.moe.ffn_hidden;
  auto message = [&](offload::OffloadOptions o) {
    try {
      offload::gpu_slots(o, c, expert);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  offload::OffloadOptions o;
  o.gpu_experts = static_cast<int>(c.moe.experts) + 1;
  EXPECT_NE(message(o).find("--gpu-experts"), std::string::npos);
  o.gpu_experts = -1;
  o.expert_budget = static_cast<int64_t>(expert);  // one expert, but every MoE layer needs a slot
  EXPECT_NE(message(o).find("--expert-budget"), std::string::npos);
  o.expert_budget = static_cast<int64_t>(expert * 100);
  EXPECT_EQ(message(o), "");
  o.gpu_experts = 3;
  EXPECT_NE(message(o).find("not both"), std::string::npos);
  EXPECT_THROW(offload::parse_refresh_interval("0"), std::exception);
  EXPECT_THROW(offload::parse_refresh_interval("-2"), std::exception);
  EXPECT_THROW(offload::parse_refresh_interval("3x"), std::exception);
  EXPECT_EQ(offload::parse_refresh_interval("auto"), 0);
  EXPECT_EQ(offload::parse_refresh_interval("4"), 4);
  EXPECT_THROW(offload::parse_policy("fifo"), std::exception);
}

}  // namespace
}  // namespace mosaic
