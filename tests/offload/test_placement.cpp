// TIDE's placement rules on plain data: the refresh's pairing, the fetch-on-miss baseline.
#include <gtest/gtest.h>

#include "offload/placement.h"

namespace mosaic::offload {
namespace {

std::vector<int64_t> counts_of(std::initializer_list<int64_t> c) { return std::vector<int64_t>(c); }

TEST(Placement, StartsWithTheFirstExpertsAndSwapsSlots) {
  LayerPlacement p(6, 2);
  EXPECT_TRUE(p.resident(0));
  EXPECT_TRUE(p.resident(1));
  EXPECT_FALSE(p.resident(2));
  p.swap(4, 0);
  EXPECT_FALSE(p.resident(0));
  EXPECT_EQ(p.slot_of(4), 0);
  EXPECT_EQ(p.expert_in(0), 4);
  EXPECT_THROW(p.swap(1, 4), std::exception);  // 1 is already resident
  EXPECT_THROW(p.swap(3, 2), std::exception);  // 2 is not
  EXPECT_THROW(LayerPlacement(4, 5), std::exception);
}

TEST(Placement, RefreshPromotesTheBusiestAndEvictsTheIdlestResidentsOnly) {
  LayerPlacement p(8, 3);  // 0, 1, 2 resident
  // Busiest: 5 (9), 1 (7), 6 (4), then 0 (3), 2 (0). Target {5, 1, 6}: 5 and 6 come in,
  // paired with the residents outside the target by fewest pairs: 2 (0) first, then 0 (3).
  const auto swaps = plan_refresh(p, counts_of({3, 7, 0, 1, 0, 9, 4, 2}));
  ASSERT_EQ(swaps.size(), 2u);
  EXPECT_EQ(swaps[0], (Swap{5, 2}));
  EXPECT_EQ(swaps[1], (Swap{6, 0}));
  apply_swaps(p, swaps);
  for (int e : {1, 5, 6}) EXPECT_TRUE(p.resident(e)) << e;
}

TEST(Placement, RefreshCopiesNothingWhenTheBusiestAreResident) {
  LayerPlacement p(8, 3);
  EXPECT_TRUE(plan_refresh(p, counts_of({5, 5, 5, 5, 0, 0, 0, 0})).empty());  // ties: lower ids win
  EXPECT_TRUE(plan_refresh(p, counts_of({0, 1, 0, 0, 0, 0, 0, 0})).empty());  // few routed: residents stay
  // 2 (resident, 1 pair) stays against 3 and 4 (1 pair each), and 5 (4 pairs) takes the slot
  // of 0 (unrouted).
  const auto swaps = plan_refresh(p, counts_of({0, 6, 1, 1, 1, 4, 0, 0}));
  ASSERT_EQ(swaps.size(), 1u);
  EXPECT_EQ(swaps[0], (Swap{5, 0}));
  apply_swaps(p, swaps);
  // Now 1, 2 and 5 are resident; 3 has more pairs than 2 and comes in, 4 ties with 2 and does not.
  const auto more = plan_refresh(p, counts_of({0, 6, 1, 2, 1, 4, 0, 0}));
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0], (Swap{3, 2}));
  apply_swaps(p, more);
  // 1, 3 and 5 resident: 0 ties with 3 at one pair and has the lower id, but 3 stays.
  EXPECT_TRUE(plan_refresh(p, counts_of({1, 6, 0, 1, 0, 4, 0, 0})).empty());
}

TEST(Placement, RefreshNeverPromotesAnUnroutedExpert) {
  LayerPlacement p(6, 4);
  const auto swaps = plan_refresh(p, counts_of({0, 0, 0, 0, 2, 1}));
  ASSERT_EQ(swaps.size(), 2u);  // 4 and 5 in; the two other slots keep their experts
  EXPECT_EQ(swaps[0].promote, 4);
  EXPECT_EQ(swaps[1].promote, 5);
  EXPECT_EQ(swaps[0].demote, 0);
  EXPECT_EQ(swaps[1].demote, 1);
}

TEST(Placement, LruFetchesMissesEvictingTheLeastRecentlyUsed) {
  LayerPlacement p(6, 2);  // 0, 1
  LruPlacement lru(6);
  apply_swaps(p, lru.fetch(p, counts_of({1, 0, 0, 0, 0, 0})));  // step 0: 0 used, no miss
  apply_swaps(p, lru.fetch(p, counts_of({0, 1, 0, 0, 0, 0})));  // step 1: 1 used
  // Step 2 routes 3: 0 was used longest ago (step 0), so 3 takes its slot.
  auto s = lru.fetch(p, counts_of({0, 0, 0, 2, 0, 0}));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0], (Swap{3, 0}));
  apply_swaps(p, s);
  // Step 3 routes 3, 4 and 5: only 1 may go (3 is routed now), so 4 (more pairs) comes in and 5
  // stays a miss run on the CPU.
  s = lru.fetch(p, counts_of({0, 0, 0, 1, 3, 1}));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0], (Swap{4, 1}));
  apply_swaps(p, s);
  EXPECT_TRUE(p.resident(3));
  EXPECT_TRUE(p.resident(4));
}

TEST(Placement, CountsRoutesAndRefusesAnExpertOutOfRange) {
  const int32_t ids[] = {2, 0, 2, 3};
  EXPECT_EQ(count_routes(ids, 4, 4), counts_of({1, 0, 2, 1}));
  const int32_t bad[] = {4};
  EXPECT_THROW(count_routes(bad, 1, 4), std::exception);
}

}  // namespace
}  // namespace mosaic::offload
