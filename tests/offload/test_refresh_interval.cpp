// The refresh interval's cost model: it prices what a replay of the routing shows, and its
// choice follows the costs (fast copies: refresh often; slow copies: seldom).
#include <gtest/gtest.h>

#include "offload/refresh_interval.h"

namespace mosaic::offload {
namespace {

// One layer, 8 experts, 2 slots; blocks of 4 steps whose routing drifts every step: step s of a
// block routes experts (s, s+1) mod 8 with 3 pairs each... plus expert 7 once.
RoutingTrace drifting_trace(int blocks) {
  RoutingTrace t;
  for (int b = 0; b < blocks; ++b)
    for (int s = 0; s < 4; ++s) {
      std::vector<int64_t> c(8, 0);
      c[(2 * b + s) % 7] = 3;
      c[(2 * b + s + 1) % 7] = 3;
      c[7] = 1;
      t.add(s, {c});
    }
  return t;
}

OffloadCosts costs(double h2d_bytes_per_s) {
  return {h2d_bytes_per_s, /*expert_bytes=*/1e6, /*cpu_s_per_expert=*/1e-3, /*cpu_s_per_row=*/1e-4};
}

TEST(RefreshInterval, PricesWhatTheReplaySees) {
  const RoutingTrace t = drifting_trace(1);
  // tau 1: refresh at every step. Step 0 fills the slots with {0, 1} (not priced); step 1 routes
  // {1, 2}: 2 comes in for 0; step 2 {2, 3}: 3 for 1; step 3 {3, 4}: 4 for 2. Expert 7 (1 pair)
  // runs on the CPU at every step.
  const TauCost every = price_tau(t, 2, 1, costs(1e9));
  EXPECT_EQ(every.swaps, 3);
  EXPECT_EQ(every.cpu_pairs, 4);
  EXPECT_NEAR(every.transfer_s, 3e-3, 1e-12);
  EXPECT_NEAR(every.cpu_s, 4e-3, 1e-12);
  // Never refreshed: {0, 1} stay; steps 1-3 run 1 + 2 + 2 unresident experts of 3 pairs on the
  // CPU besides expert 7.
  const TauCost never = price_tau(t, 2, 0, costs(1e9));
  EXPECT_EQ(never.swaps, 0);
  EXPECT_EQ(never.cpu_pairs, 4 + 15);
  EXPECT_NEAR(never.cpu_s, 4e-3 + 5 * (1e-3 + 2e-4), 1e-12);
  EXPECT_EQ(every.gpu_pairs + every.cpu_pairs, never.gpu_pairs + never.cpu_pairs);
}

// A layer-step costs the longer of the copies it waits for and its CPU time, not their sum. Lagged:
// the promoted expert's 3 pairs run on the CPU at each refresh step, its copy behind.
TEST(RefreshInterval, LaggedCopiesOverlapAndPromotedExpertsRunOnTheCpuOnce) {
  const RoutingTrace t = drifting_trace(1);
  const TauCost blocking = price_tau(t, 2, 1, costs(1e9));
  const TauCost lagged = price_tau(t, 2, 1, costs(1e9), true);
  EXPECT_EQ(lagged.swaps, blocking.swaps);
  EXPECT_EQ(lagged.cpu_pairs, blocking.cpu_pairs + 3 * 3);  // steps 1-3 each promote one expert of 3 pairs
  EXPECT_NEAR(lagged.cpu_s, 4e-3 + 3 * (1e-3 + 2e-4), 1e-12);
  EXPECT_EQ(lagged.waited, 0);
  EXPECT_NEAR(lagged.total_s(), std::max(lagged.transfer_s, lagged.cpu_s), 1e-15);
  // Steps 1-3 wait for one copy (1 ms) while expert 7 runs on the CPU (1 ms): 1 ms each, as step 0.
  EXPECT_EQ(blocking.waited, 3);
  EXPECT_NEAR(blocking.total_s(), 4e-3, 1e-12);
  EXPECT_TRUE(choose_tau(t, 2, 3, costs(1e9), true).candidates.front().lagged);
}

// A layer's CPU experts run in parallel: at a speedup of 2, the two unresident experts of steps
// 2 and 3 cost one expert each (the longest), and step 1's lone one its own time.
TEST(RefreshInterval, CpuExpertsOfALayerRunInParallel) {
  const RoutingTrace t = drifting_trace(1);
  OffloadCosts c = costs(1e9);
  c.cpu_parallel_speedup = 2;
  const TauCost never = price_tau(t, 2, 0, c);
  // step 0: expert 7 (1e-3); step 1: experts 2 and 7: max(1.2e-3, 2.2e-3 / 2); steps 2, 3: experts
  // {2, 3} or {3, 4} and 7: max(1.2e-3, 3.4e-3 / 2).
  EXPECT_NEAR(never.cpu_s, 1e-3 + 1.2e-3 + 2 * 1.7e-3, 1e-12);
  c.cpu_parallel_speedup = 0.5;  // below 1 means one after another
  EXPECT_NEAR(price_tau(t, 2, 0, c).cpu_s, price_tau(t, 2, 0, costs(1e9)).cpu_s, 1e-12);
}

// A refresh waits for as many copies as pay: copies of 1 ms, CPU experts of 1 ms (+0.1 ms per
// further pair) at 4x in parallel. Promoted experts of 5, 1, 1 and 1 pairs: waiting for all
// costs 4 ms, for the first only max(1 ms, three 1-pair experts on the CPU: 1 ms) = 1 ms, for
// none max(0, 4.4 ms / 4 = 1.1 ms but the longest is 1.4 ms) = 1.4 ms.
TEST(RefreshInterval, ARefreshWaitsForTheCopiesThatPay) {
  OffloadCosts c = costs(1e9);
  c.cpu_parallel_speedup = 4;
  const CopySplit s = split_copies({5, 1, 1, 1}, {}, c, false);
  EXPECT_EQ(s.waited, 1);
  EXPECT_NEAR(s.seconds, 1e-3, 1e-12);
  EXPECT_NEAR(s.cpu_s, 1e-3, 1e-12);
  EXPECT_NEAR(split_copies({5, 1, 1, 1}, {}, c, true).seconds, 1.4e-3, 1e-12);  // lagged: none waited
  EXPECT_EQ(split_copies({5, 1, 1, 1}, {}, c, true).waited, 0);
  // The layer's other CPU experts count: with eight more 1-pair experts on the CPU, waiting for
  // one copy costs max(1 ms, 11 / 4 ms), for two max(2 ms, 10 / 4 ms), for three 3 ms: two win.
  const CopySplit busy = split_copies({5, 1, 1, 1}, std::vector<int64_t>(8, 1), c, false);
  EXPECT_EQ(busy.waited, 2);
  EXPECT_NEAR(busy.seconds, 2.5e-3, 1e-12);
  EXPECT_EQ(split_copies({5, 1, 1, 1}, {}, OffloadCosts{}, false).waited, 4);  // unmeasured: all of them
  // Copies nearly free: all of them.
  EXPECT_EQ(split_copies({5, 1, 1, 1}, {}, costs(1e12), false).waited, 4);
}

TEST(RefreshInterval, FastCopiesRefreshOftenSlowCopiesSeldom) {
  const RoutingTrace t = drifting_trace(3);
  EXPECT_EQ(choose_tau(t, 2, 4, costs(1e12)).tau, 1);  // a copy costs 1 us: refresh every step
  const TauChoice slow = choose_tau(t, 2, 4, costs(1e7));  // a copy costs 100 ms: only at block starts
  EXPECT_NE(slow.tau, 1);
  for (const TauCost& c : slow.candidates) EXPECT_LE(c.total_s(), price_tau(t, 2, 1, costs(1e7)).total_s());
  EXPECT_NE(slow.explain(costs(1e7)).find("<-"), std::string::npos);
}

TEST(RefreshInterval, StableRoutingNeedsNoRefreshInsideABlock) {
  RoutingTrace t;
  for (int s = 0; s < 8; ++s) t.add(s % 4, {{4, 4, 0, 0, 1, 0}});
  const TauChoice c = choose_tau(t, 2, 4, costs(1e9));
  for (const TauCost& k : c.candidates) EXPECT_EQ(k.swaps, 0);
  EXPECT_EQ(c.tau, 0);  // every tau costs the same; the largest interval (never) wins the tie
}

TEST(RefreshInterval, RefusesMissingCosts) {
  EXPECT_THROW(choose_tau(drifting_trace(1), 2, 4, OffloadCosts{}), std::exception);
  EXPECT_THROW(choose_tau(drifting_trace(1), 2, 0, costs(1e9)), std::exception);
}

}  // namespace
}  // namespace mosaic::offload
