// The sharded attentions' exchange schedules between LocalGroup threads (all-to-all over heads,
// and the ring of key/value blocks): every rank's rows of its output equal the same rows of one
// device's attention, for uneven shards, GQA and the block-causal mask; plus the shards and the
// group's own checks.
#include <gtest/gtest.h>

#include <cmath>
#include <exception>
#include <random>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "parallel/all_to_all_attention.h"
#include "parallel/local_group.h"
#include "parallel/ring_attention.h"
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
  try {
    shard_heads(32, 8, 16);  // 8 key/value heads over 16 ranks
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("8 key/value heads"), std::string::npos) << e.what();
  }
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

TEST(ShardedAttention, EachRanksRowsEqualOneDevicesAttention) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  const int heads = 8, kv_heads = 4, hd = 16;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  for (int64_t rows : {37, 64})
    for (int64_t block : {0, 8})
      for (int n : {1, 2, 4}) {
        const int64_t q_ld = heads * hd, kv_ld = kv_heads * hd;
        std::vector<float> q(static_cast<size_t>(rows * q_ld)), k(static_cast<size_t>(rows * kv_ld)),
            v(static_cast<size_t>(rows * kv_ld)), ref(q.size());
        for (auto* x : {&q, &k, &v})
          for (float& f : *x) f = dist(rng);
        std::vector<float> ws(static_cast<size_t>(cpu_traits().attn_workspace_rows * rows));
        cpu::attention(q.data(), rows, {k.data(), v.data(), rows}, {}, heads, kv_heads, hd, scale, ref.data(),
                       ws.data(), AttentionMask{block, nullptr, 0});
        // One schedule on n ranks: every rank's rows of the output, gathered.
        using Schedule = decltype(&all_to_all_attention_cpu);
        auto sharded = [&](Schedule schedule) {
          const std::vector<Shard> shards = shard_rows(rows, n);
          std::vector<float> out(q.size(), NAN);
          LocalGroup g(n);
          on_every_rank(n, [&](int r) {
            const Shard s = shards[static_cast<size_t>(r)];
            schedule(g.rank(r), q.data() + s.begin * q_ld, k.data() + s.begin * kv_ld, v.data() + s.begin * kv_ld,
                     rows, heads, kv_heads, hd, scale, block, out.data() + s.begin * q_ld);
          });
          return out;
        };
        // The same arithmetic per (row, head) on every rank: equal, not merely close.
        EXPECT_EQ(sharded(all_to_all_attention_cpu), ref) << rows << " rows, block " << block << ", " << n << " ranks";

        // The ring folds the blocks in another order (double sums): close to the reference.
        const std::vector<float> ring = sharded(ring_attention_cpu);
        for (size_t i = 0; i < ring.size(); ++i)
          ASSERT_NEAR(ring[i], ref[i], 1e-5f + 1e-5f * std::abs(ref[i]))
              << "ring: element " << i << ", " << rows << " rows, block " << block << ", " << n << " ranks";
      }
}

}  // namespace
}  // namespace mosaic::parallel
