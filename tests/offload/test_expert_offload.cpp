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
