// The LLaDA schedule, the tie rule of top-k and the option checks of the sampler.
#include <gtest/gtest.h>

#include "core/error.h"
#include "decode/llada_sampler.h"
#include "decode/schedule.h"

namespace mosaic {
namespace {

TEST(Schedule, MatchesGetNumTransferTokens) {
  // get_num_transfer_tokens: base = n // steps, the first n % steps steps get one more.
  EXPECT_EQ(transfer_schedule(32, 8), std::vector<int64_t>(8, 4));
  EXPECT_EQ(transfer_schedule(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(transfer_schedule(3, 5), (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(transfer_schedule(0, 2), (std::vector<int64_t>{0, 0}));
  for (int64_t n = 0; n < 50; ++n)
    for (int64_t s = 1; s < 12; ++s) {
      auto v = transfer_schedule(n, s);
      int64_t sum = 0;
      for (auto x : v) sum += x;
      EXPECT_EQ(sum, n);
      EXPECT_TRUE(std::is_sorted(v.rbegin(), v.rend()));
    }
}

TEST(Schedule, TopKPrefersHigherThenLowerIndex) {
  std::vector<float> c = {0.5f, 0.9f, 0.5f, 0.9f, 0.1f};
  EXPECT_EQ(top_k_indices(c, 3), (std::vector<int64_t>{1, 3, 0}));
  EXPECT_EQ(top_k_indices(c, 0).size(), 0u);
  EXPECT_EQ(top_k_indices(c, 9).size(), 5u);
}

TEST(Schedule, RankRowsOnCpuIsStableDescending) {
  auto be = make_cpu_backend();
  std::vector<float> c = {0.2f, 0.7f, 0.7f, -1.f, 0.7f, 0.2f};
  std::vector<int32_t> order(c.size());
  be->rank_rows(c.data(), static_cast<int64_t>(c.size()), order.data());
  EXPECT_EQ(order, (std::vector<int32_t>{1, 2, 4, 0, 5, 3}));
}

std::string error_of(const GenerateOptions& o) {
  try {
    validate_generate_options(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GenerateOptions, ErrorsNameTheFlags) {
  GenerateOptions o{30, 30, 8};
  EXPECT_NE(error_of(o).find("--gen-length 30 is not a multiple of --block-length 8"), std::string::npos);
  o = {32, 6, 8};
  std::string e = error_of(o);
  EXPECT_NE(e.find("--steps 6"), std::string::npos) << e;
  EXPECT_NE(e.find("number of blocks (4"), std::string::npos) << e;
  o = {32, 8, 8};
  o.temperature = -1;
  EXPECT_NE(error_of(o).find("--temperature"), std::string::npos);
  o = {32, 8, 8};
  EXPECT_EQ(error_of(o), "");
  EXPECT_THROW(parse_remasking("lowest"), Error);
}

}  // namespace
}  // namespace mosaic
