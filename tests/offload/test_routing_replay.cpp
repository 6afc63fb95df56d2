// A recorded routing replayed into a model of another shape: every replayed expert is one of its
// recorded expert's successors, a row's picks are distinct, a row whose recorded routing stays
// keeps its picks from step to step, rows spread over all successors, and shapes that cannot be
// spread are refused.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "offload/routing_replay.h"

namespace mosaic::offload {
namespace {

// 8 experts, top 2, MoE layers {1, 2}; two steps, 64 rows each. Step 1 repeats step 0 except row 0.
RoutingRecord two_steps() {
  RoutingRecord rec(8, 2, {1, 2});
  for (int s = 0; s < 2; ++s) {
    rec.begin_step();
    for (int layer : {1, 2}) {
      std::vector<int32_t> ids;
      for (int r = 0; r < 64; ++r) {
        const int a = (r + layer) % 8;
        ids.push_back(s == 1 && r == 0 ? (a + 3) % 8 : a);
        ids.push_back((a + 1) % 8);
      }
      rec.routed(layer, 0, 64, 2, ids.data());
    }
  }
  return rec;
}

std::vector<int32_t> replay_step(RoutingReplay& rp, int layer, int64_t rows) {
  std::vector<int32_t> ids(static_cast<size_t>(rows * 4), -1);
  rp.routed(layer, 0, rows, 4, ids.data());
  return ids;
}

TEST(RoutingReplay, SpreadsEachRecordedExpertOverItsSuccessors) {
  const RoutingRecord rec = two_steps();
  ASSERT_EQ(rec.steps(), 2);
  RoutingReplay rp(rec, 32, 4, {3, 5, 7});  // 4 successors per expert, 2 picks each
  rp.restart();
  rp.begin_step();
  const std::vector<int32_t> s0 = replay_step(rp, 3, 64);
  std::set<int32_t> used;
  for (int r = 0; r < 64; ++r) {
    const std::vector<int32_t>& want = rec.ids(0, 0);
    std::set<int32_t> row;
    for (int k = 0; k < 4; ++k) {
      const int32_t e = s0[static_cast<size_t>(r * 4 + k)];
      EXPECT_EQ(e / 4, want[static_cast<size_t>(r * 2 + k / 2)]) << "row " << r << " pick " << k;
      row.insert(e);
      used.insert(e);
    }
    EXPECT_EQ(row.size(), 4u) << "row " << r;
  }
  EXPECT_EQ(used.size(), 32u);  // 64 rows reach every successor
  // The next step: rows whose recorded routing stayed keep their picks; row 0 changed.
  rp.begin_step();
  const std::vector<int32_t> s1 = replay_step(rp, 3, 64);
  for (int r = 1; r < 64; ++r)
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(s1[static_cast<size_t>(r * 4 + k)], s0[static_cast<size_t>(r * 4 + k)]) << "row " << r;
  EXPECT_NE(s1[0] / 4, s0[0] / 4);
  // Layer 7 is the third MoE layer: it replays recorded layer 2 mod 2 = the first one again, but
  // picks its own successors.
  const std::vector<int32_t> l7 = replay_step(rp, 7, 64);
  int same = 0;
  for (size_t i = 0; i < l7.size(); ++i) {
    EXPECT_EQ(l7[i] / 4, s1[i] / 4);
    same += l7[i] == s1[i];
  }
  EXPECT_LT(same, static_cast<int>(l7.size()));
  // More rows than recorded wrap around; steps past the record wrap too.
  rp.begin_step();
  const std::vector<int32_t> wide = replay_step(rp, 5, 70);
  EXPECT_EQ(wide[64 * 4] / 4, rec.ids(0, 1)[0]);
}

TEST(RoutingReplay, RefusesShapesItCannotSpreadOver) {
  const RoutingRecord rec = two_steps();
  EXPECT_THROW(RoutingReplay(rec, 12, 4, {1}), Error);  // 12 experts: not a multiple of 8
  EXPECT_THROW(RoutingReplay(rec, 16, 3, {1}), Error);  // top 3: not a multiple of 2
  EXPECT_THROW(RoutingReplay(rec, 16, 8, {1}), Error);  // 4 picks per expert, 2 successors
  RoutingReplay rp(rec, 16, 4, {1});
  std::vector<int32_t> ids(8);
  EXPECT_THROW(rp.routed(1, 0, 2, 4, ids.data()), Error);  // before the first step
  rp.begin_step();
  EXPECT_THROW(rp.routed(2, 0, 2, 4, ids.data()), Error);  // not one of its layers
  EXPECT_THROW(RoutingReplay(RoutingRecord(8, 2, {1}), 16, 4, {1}), Error);  // an empty record
}

}  // namespace
}  // namespace mosaic::offload
