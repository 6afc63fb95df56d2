// ExpertOffload's step clock: a layer routed twice in one step (guidance's second trunk, a
// chunked region) moves experts once; TIDE refreshes on its interval; auto traces the first block
// and then keeps the interval its cost model chose.
#include <gtest/gtest.h>

#include "offload/expert_offload.h"

namespace mosaic::offload {
namespace {

TEST(ExpertOffload, ASecondCallInTheSameStepMovesNothing) {
  ExpertOffload off(Policy::Tide, 6, 2, {1}, 1);
  off.begin_step(0);
  EXPECT_EQ(off.route(1, {0, 0, 0, 0, 5, 4}).size(), 2u);    // 4 and 5 come in
  EXPECT_TRUE(off.route(1, {9, 9, 0, 0, 0, 0}).empty());      // the same step again: counted, not moved
  EXPECT_TRUE(off.placement(1).resident(4));
  EXPECT_EQ(off.stats(1).steps, 1);
  EXPECT_EQ(off.stats(1).pairs, 9 + 18);
  off.begin_step(1);
  EXPECT_EQ(off.route(1, {9, 9, 0, 0, 0, 0}).size(), 2u);     // a new step refreshes (tau 1)
}

TEST(ExpertOffload, TideRefreshesOnItsIntervalAndAtEveryBlock) {
  ExpertOffload off(Policy::Tide, 4, 1, {0}, 2);
  auto step = [&](int s, std::vector<int64_t> c) {
    off.begin_step(s);
    return off.route(0, c).size();
  };
  EXPECT_EQ(step(0, {0, 3, 0, 0}), 1u);  // block start: 1 in
  EXPECT_EQ(step(1, {0, 0, 3, 0}), 0u);  // between refreshes: stays
  EXPECT_EQ(step(2, {0, 0, 3, 0}), 1u);  // tau 2
  EXPECT_EQ(step(0, {0, 0, 0, 3}), 1u);  // the next block
  ExpertOffload never(Policy::Static, 4, 1, {0}, 0);
  never.begin_step(0);
  EXPECT_EQ(never.route(0, {0, 3, 0, 0}).size(), 1u);  // the first step fills the slot
  never.begin_step(0);
  EXPECT_EQ(never.route(0, {0, 0, 0, 3}).size(), 0u);  // and it never moves again
}

// tide-lagged: a promoted expert is resident (its slot is being copied) but runs on the CPU at
// the step that promoted it, and on the GPU from the layer's next step, which waits for it first.
TEST(ExpertOffload, LaggedRunsAPromotedExpertOnTheCpuUntilTheNextStep) {
  ExpertOffload off(Policy::TideLagged, 4, 1, {2}, 1);
  off.begin_step(0);
  EXPECT_FALSE(off.landed(2));
  const std::vector<Swap> in = off.route(2, {0, 5, 0, 0});
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].promote, 1);
  EXPECT_TRUE(off.placement(2).resident(1));
  EXPECT_FALSE(off.on_gpu(2, 1));
  EXPECT_EQ(off.arriving(2), std::vector<int32_t>{1});
  EXPECT_EQ(off.stats(2).gpu_pairs, 0);                // the 5 pairs ran on the CPU
  EXPECT_TRUE(off.route(2, {0, 2, 0, 0}).empty());    // the same step again: still arriving
  EXPECT_FALSE(off.landed(2));
  EXPECT_EQ(off.stats(2).gpu_pairs, 0);
  off.begin_step(1);
  EXPECT_TRUE(off.route(2, {0, 4, 0, 0}).empty());    // already resident: nothing to copy
  EXPECT_TRUE(off.landed(2));                          // the layer waits for the copy, then uses it
  EXPECT_TRUE(off.on_gpu(2, 1));
  EXPECT_EQ(off.stats(2).gpu_pairs, 4);
  off.begin_step(2);
  off.route(2, {0, 4, 0, 0});
  EXPECT_FALSE(off.landed(2));                         // nothing was sent at step 1
  // The blocking policy uses a promoted expert at once.
  ExpertOffload now(Policy::Tide, 4, 1, {2}, 1);
  now.begin_step(0);
  now.route(2, {0, 5, 0, 0});
  EXPECT_TRUE(now.on_gpu(2, 1));
  EXPECT_TRUE(now.arriving(2).empty());
  EXPECT_EQ(now.stats(2).gpu_pairs, 5);
}

// tide with measured costs: the layer waits for the copies that pay (split_copies) and sends the
// rest behind, as tide-lagged does with all of them. Copies of 1 ms, CPU experts of 1 ms at 4x in
// parallel: of promoted experts with 5, 1, 1 and 1 pairs it waits for the first only.
TEST(ExpertOffload, TideWaitsForTheCopiesThatPayAndSendsTheRestBehind) {
  ExpertOffload off(Policy::Tide, 8, 4, {3}, 1);
  off.set_costs({1e9, 1e6, 1e-3, 1e-4, 4});
  off.begin_step(0);
  const std::vector<Swap> in = off.route(3, {0, 0, 0, 0, 5, 1, 1, 1});
  ASSERT_EQ(in.size(), 4u);
  EXPECT_EQ(in[0].promote, 4);
  EXPECT_TRUE(off.on_gpu(3, 4));
  EXPECT_EQ(off.arriving(3), (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(off.stats(3).gpu_pairs, 5);
  EXPECT_EQ(off.stats(3).behind, 3);
  off.begin_step(1);
  EXPECT_TRUE(off.route(3, {0, 0, 0, 0, 5, 1, 1, 1}).empty());
  EXPECT_TRUE(off.landed(3));
  for (int e : {5, 6, 7}) EXPECT_TRUE(off.on_gpu(3, e)) << e;
  EXPECT_NE(off.report().find("behind"), std::string::npos);
  // Unmeasured, tide waits for every copy.
  ExpertOffload plain(Policy::Tide, 8, 4, {3}, 1);
  plain.begin_step(0);
  plain.route(3, {0, 0, 0, 0, 5, 1, 1, 1});
  EXPECT_TRUE(plain.arriving(3).empty());
}

// Calibrated, the CPU's cost per expert follows what the layer-steps' CPU parts took: 4 CPU
// experts of 1 pair each (4x in parallel: one expert's time) that took 2 ms make it 2 ms, and
// the next refresh prices with it. Uncalibrated, observations change nothing.
TEST(ExpertOffload, TheCpuCostFollowsWhatTheStepsTook) {
  ExpertOffload off(Policy::Tide, 8, 4, {0}, 1);
  off.set_costs({1e9, 1e6, 1e-3, 1e-4, 4});
  off.begin_step(0);
  // 4 copies of 1 ms; 1-4 CPU experts take 1 ms at 4x: it waits for one (a tie with none, which
  // goes to more waited) and sends 3 behind.
  off.route(0, {0, 0, 0, 0, 1, 1, 1, 1});
  EXPECT_EQ(off.arriving(0).size(), 3u);
  off.begin_step(1);
  off.route(0, {1, 1, 1, 1, 1, 1, 1, 1});  // 0-3 have as many pairs as the residents: on the CPU
  EXPECT_TRUE(off.landed(0));
  off.observe_cpu(0, 2e-3);
  EXPECT_EQ(off.costs().cpu_observations, 0);  // not calibrating
  off.calibrate_cpu(true);
  off.observe_cpu(0, 2e-3);
  EXPECT_EQ(off.costs().cpu_observations, 1);
  EXPECT_NEAR(off.costs().cpu_s_per_expert, 2e-3, 1e-12);
  off.observe_cpu(0, 4e-3);
  EXPECT_NEAR(off.costs().cpu_s_per_expert, 0.95 * 2e-3 + 0.05 * 4e-3, 1e-12);
  off.begin_step(2);
  off.route(0, {1, 1, 1, 1, 1, 1, 1, 1});  // no refresh copies: all resident ones stay
  off.observe_cpu(0, 0);                    // nothing timed: nothing learnt
  EXPECT_EQ(off.costs().cpu_observations, 2);
}

TEST(ExpertOffload, AutoTracesTheFirstBlockThenChooses) {
  ExpertOffload off(Policy::Tide, 4, 1, {0}, 0);
  off.set_costs({1e12, 1e6, 1e-3, 1e-4});  // copies nearly free: refreshing every step wins
  for (int s = 0; s < 4; ++s) {
    off.begin_step(s);
    off.route(0, {s == 0 ? 3 : 0, s == 1 ? 3 : 0, s == 2 ? 3 : 0, s == 3 ? 3 : 0});
  }
  EXPECT_FALSE(off.tau_choice().has_value());
  off.begin_step(0);
  ASSERT_TRUE(off.tau_choice().has_value());
  EXPECT_EQ(off.refresh_interval(), 1);
}

}  // namespace
}  // namespace mosaic::offload
