// Dream's schedule arithmetic and options, and the engine loop's cursor, without a model.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "decode/dream_sampler.h"
#include "decode/sequence.h"

namespace mosaic {
namespace {

TEST(DreamSchedule, LinspaceIsTorchsFloat32Values) {
  // torch.linspace(1, 1e-3, n, dtype=float32) printed by torch 2.11 on an H200, on CUDA and on
  // its CPU alike (docs/perf/2026-12-02-families/torch_linspace.txt). Rounding the product
  // before the add (no fused multiply-add) is one ulp off at some of these (t[6] of 17).
  std::vector<float> t = linspace_f32(1.0f, 1e-3f, 17);
  ASSERT_EQ(t.size(), 17u);
  EXPECT_EQ(t.front(), 1.0f);
  EXPECT_EQ(t.back(), 1e-3f);
  EXPECT_EQ(t[3], 0x1.a01894p-1f);
  EXPECT_EQ(t[6], 0x1.403126p-1f);
  EXPECT_EQ(t[7], 0x1.203958p-1f);
  EXPECT_EQ(t[8], 0x1.00418ap-1f);
  EXPECT_EQ(t[12], 0x1.00c49cp-2f);
  t = linspace_f32(1.0f, 1e-3f, 513);
  EXPECT_EQ(t[3], 0x1.fd00c4p-1f);
  EXPECT_EQ(t[6], 0x1.fa018ap-1f);
  EXPECT_EQ(t[7], 0x1.f901cap-1f);
  EXPECT_EQ(t[256], 0x1.00418ap-1f);
  EXPECT_EQ(t[508], 0x1.208312p-7f);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_LT(t[i], t[i - 1]);
  EXPECT_EQ(linspace_f32(1.0f, 0.5f, 1), std::vector<float>({1.0f}));
}

TEST(DreamSchedule, TransferCountTruncatesTheFloat32Product) {
  // int(n * (1 - s/t)) in float32: 32 masks, t = 1, s = 0.9375 -> 32 * 0.0625 = 2 exactly.
  EXPECT_EQ(dream_transfer_count(32, 1.0f, 0.9375f), 2);
  EXPECT_EQ(dream_transfer_count(5, 1.0f, 0.9375f), 0);  // 0.3125 truncates to 0: the step commits nothing
  EXPECT_EQ(dream_transfer_count(0, 0.5f, 0.25f), 0);
  // torch (same file) gives 2 at 1013 masks between steps 6 and 7 of 512; double arithmetic gives 1.
  std::vector<float> t = linspace_f32(1.0f, 1e-3f, 513);
  EXPECT_EQ(dream_transfer_count(1013, t[6], t[7]), 2);
  EXPECT_EQ(dream_transfer_count(5000, t[200], t[201]), 15);
  // Every step of a 16-step schedule over 32 masks commits at most what is left.
  t = linspace_f32(1.0f, 1e-3f, 17);
  int64_t left = 32;
  for (int i = 0; i < 15; ++i) {
    int64_t k = dream_transfer_count(left, t[i], t[i + 1]);
    EXPECT_GE(k, 0);
    EXPECT_LE(k, left);
    left -= k;
  }
  EXPECT_GT(left, 0) << "the last step commits the rest";
}

std::string error_of(const DreamOptions& o) {
  try {
    validate_dream_options(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DreamOptions, ErrorsNameTheFlags) {
  DreamOptions o;
  EXPECT_EQ(error_of(o), "");
  o.block_length = 48;
  EXPECT_NE(error_of(o).find("--block-length 48"), std::string::npos);
  o = {};
  o.block_length = 32;
  o.steps = 6;
  EXPECT_NE(error_of(o).find("--steps 6"), std::string::npos);
  o = {};
  o.top_p = 0;
  EXPECT_NE(error_of(o).find("--top-p"), std::string::npos);
  o = {};
  o.top_k = -1;
  EXPECT_NE(error_of(o).find("--top-k"), std::string::npos);
  o = {};
  o.eps = 1;
  EXPECT_NE(error_of(o).find("--eps"), std::string::npos);
  o = {};
  o.alg_temp = -0.5;
  EXPECT_NE(error_of(o).find("--alg-temp"), std::string::npos);
  o = {};
  o.temperature = -1;
  EXPECT_NE(error_of(o).find("--temperature"), std::string::npos);
  EXPECT_THROW(parse_dream_alg("greedy"), Error);
  for (DreamAlg a : {DreamAlg::Origin, DreamAlg::MaskgitPlus, DreamAlg::TopkMargin, DreamAlg::Entropy})
    EXPECT_EQ(parse_dream_alg(dream_alg_name(a)), a);
}

TEST(Sequence, StartsMaskedAndAdvancesThroughBlocks) {
  Sequence s = Sequence::start({7, 8}, 6, 99, 3);
  EXPECT_EQ(s.tokens, std::vector<int32_t>({7, 8, 99, 99, 99, 99, 99, 99}));
  EXPECT_EQ(s.gen_length(), 6);
  EXPECT_EQ(s.masked_in(0, 4), std::vector<int32_t>({2, 3}));
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(s.finished);
    s.advance(/*steps_per_block=*/2, /*num_blocks=*/3);
  }
  EXPECT_EQ(s.block, 2);
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(s.global_step, 5);
  s.advance(2, 3);
  EXPECT_TRUE(s.finished);
  EXPECT_THROW(Sequence::start({1}, 0, 99, 0), Error);
}

}  // namespace
}  // namespace mosaic
