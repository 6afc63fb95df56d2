// How a sharded step cuts its rows and heads across ranks, which exchange it picks, and the
// LocalGroup communicator's own checks (the exchanges themselves run in the engine's sharded
// step: tests/models/test_sharded_step.cpp).
#include <gtest/gtest.h>

#include <exception>
#include <thread>
#include <vector>

#include "core/error.h"
#include "parallel/local_group.h"
#include "parallel/sequence_shards.h"

namespace mosaic::parallel {
namespace {

// Runs fn(rank) on one thread per rank; rethrows the first rank's error.
template <class Fn>
void on_every_rank(int n, Fn fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(SequenceShards, RowsAreContiguousAndEven) {
  const std::vector<Shard> s = shard_rows(10, 4);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].begin, 0);
  EXPECT_EQ(s[0].count, 3);
  EXPECT_EQ(s[1].count, 3);
  EXPECT_EQ(s[2].count, 2);
  EXPECT_EQ(s[3].end(), 10);
  for (size_t i = 1; i < s.size(); ++i) EXPECT_EQ(s[i].begin, s[i - 1].end());
  EXPECT_EQ(shard_rows(2, 4)[3].count, 0);  // fewer rows than ranks: empty shards at the end
  EXPECT_THROW(shard_rows(5, 0), Error);
}

TEST(SequenceShards, HeadsMustDivideByTheRanks) {
  const HeadGroups g = shard_heads(32, 8, 4);
  EXPECT_EQ(g.heads[3].begin, 24);
  EXPECT_EQ(g.kv_heads[3].begin, 6);
  EXPECT_EQ(g.kv_heads[3].count, 2);
  // More ranks than key/value heads: each rank reads one, two ranks the same
  const HeadGroups more = shard_heads(32, 8, 16);
  EXPECT_EQ(more.heads[5].begin, 10);
  EXPECT_EQ(more.kv_heads[5].begin, 2);  // query heads 10, 11 read key/value head 10 / 4
  EXPECT_EQ(more.kv_heads[5].count, 1);
  EXPECT_TRUE(heads_split(28, 4, 4));   // Dream-7B on 4
  EXPECT_FALSE(heads_split(28, 4, 8));  // and not on 8: 28 query heads
  EXPECT_FALSE(heads_split(48, 6, 4));  // 6 key/value heads on 4 ranks: neither divides the other
  try {
    shard_heads(48, 6, 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("6 key/value heads by 4"), std::string::npos) << e.what();
  }
  // Auto: the smaller exchange per row. LLaDA-8B (32/32): a tie on 2 ranks (2*16 + 2*16 = 64 =
  // 2*32 heads), the all-to-all from 4 (2*8 + 2*8 = 32); Dream-7B (28/4) never: 2*7 + 2*1 > 8.
  EXPECT_EQ(exchange_heads_per_row(Exchange::AllToAll, 32, 32, 2), 64);
  EXPECT_EQ(exchange_heads_per_row(Exchange::AllGather, 32, 32, 2), 64);
  EXPECT_EQ(resolve_exchange(Exchange::Auto, 32, 32, 2), Exchange::AllGather);
  EXPECT_EQ(resolve_exchange(Exchange::Auto, 32, 32, 4), Exchange::AllToAll);
  EXPECT_EQ(resolve_exchange(Exchange::Auto, 32, 32, 8), Exchange::AllToAll);
  EXPECT_EQ(resolve_exchange(Exchange::Auto, 28, 4, 4), Exchange::AllGather);
  EXPECT_EQ(resolve_exchange(Exchange::Auto, 28, 4, 8), Exchange::AllGather);  // 28 heads do not split 8 ways
  EXPECT_EQ(exchange_heads_per_row(Exchange::AllToAll, 28, 4, 8), -1);
  EXPECT_EQ(resolve_exchange(Exchange::AllGather, 32, 32, 8), Exchange::AllGather);
  EXPECT_EQ(resolve_exchange(Exchange::AllToAll, 32, 32, 2), Exchange::AllToAll);
}

TEST(LocalGroup, AllToAllDeliversEachPairsBytes) {
  const int n = 3;
  LocalGroup g(n);
  std::vector<std::vector<int>> got(n, std::vector<int>(n, -1));
  on_every_rank(n, [&](int r) {
    std::vector<int> send(n);
    std::vector<const void*> sp;
    std::vector<void*> rp;
    for (int j = 0; j < n; ++j) send[static_cast<size_t>(j)] = 10 * r + j, sp.push_back(&send[static_cast<size_t>(j)]);
    for (int i = 0; i < n; ++i) rp.push_back(&got[static_cast<size_t>(r)][static_cast<size_t>(i)]);
    g.rank(r).all_to_all(sp, std::vector<size_t>(n, sizeof(int)), rp, std::vector<size_t>(n, sizeof(int)));
  });
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < n; ++i) EXPECT_EQ(got[static_cast<size_t>(r)][static_cast<size_t>(i)], 10 * i + r);
}

TEST(LocalGroup, MismatchedSizesFailOnEveryRankWithoutHanging) {
  const int n = 2;
  LocalGroup g(n);
  std::vector<int> failed(n, 0);
  on_every_rank(n, [&](int r) {
    int send[2] = {1, 2}, recv[2] = {0, 0};
    // Rank 1 expects 8 bytes from rank 0, which sends 4.
    const std::vector<size_t> rb = r == 1 ? std::vector<size_t>{8, 4} : std::vector<size_t>{4, 4};
    try {
      g.rank(r).all_to_all({&send[0], &send[1]}, {4, 4}, {&recv[0], &recv[1]}, rb);
    } catch (const Error& e) {
      failed[static_cast<size_t>(r)] = 1;
      EXPECT_NE(std::string(e.what()).find("expects 8 B"), std::string::npos) << e.what();
    }
  });
  EXPECT_EQ(failed, (std::vector<int>{1, 1})) << "the sender fails too: it would wait in its next collective";
}

// A failure in the first of two collectives: no rank reaches the second, none hangs.
TEST(LocalGroup, AFailedCollectiveStopsEveryRanksSchedule) {
  const int n = 3;
  LocalGroup g(n);
  std::vector<int> reached_second(n, 0);
  EXPECT_THROW(on_every_rank(n, [&](int r) {
                 int send[3] = {1, 2, 3}, recv[3] = {0, 0, 0};
                 std::vector<const void*> sp = {&send[0], &send[1], &send[2]};
                 std::vector<void*> rp = {&recv[0], &recv[1], &recv[2]};
                 std::vector<size_t> rb(n, 4);
                 if (r == 2) rb[0] = 0;  // rank 2 expects nothing from rank 0
                 g.rank(r).all_to_all(sp, std::vector<size_t>(n, 4), rp, rb);
                 reached_second[static_cast<size_t>(r)] = 1;
                 g.rank(r).all_to_all(sp, std::vector<size_t>(n, 4), rp, std::vector<size_t>(n, 4));
               }),
               Error);
  EXPECT_EQ(reached_second, (std::vector<int>(n, 0)));
}

}  // namespace
}  // namespace mosaic::parallel
