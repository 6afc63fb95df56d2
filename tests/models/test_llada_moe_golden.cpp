// LLaDA-MoE (OLMoE-style MoE under LLaDA's attention and sampler) on the CPU against the PyTorch
// reference of the official code (tools/reference/llada_moe.py): the family picked by
// `architectures` (its model_type is "llada"), the forward's logits, and every LLaDA generate()
// case token for token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <numeric>

#include "backend/backend.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "models/model.h"
#include "reference_tensors.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path llada_moe_tiny() { return test::fixtures_dir() / "llada_moe_tiny"; }

TEST(LladaMoeGolden, ForwardLogitsEqualTheReference) {
  auto f = io::SafetensorsFile::open((llada_moe_tiny() / "reference_logits.safetensors").string());
  const std::vector<int32_t> tokens = test::tensor_i32(f, "tokens");
  auto be = make_cpu_backend();
  Model m(llada_moe_tiny().string(), *be);
  ASSERT_EQ(m.config().family, "llada_moe") << "architectures LLaDAMoEModelLM picks it over model_type llada";
  ASSERT_FALSE(m.config().moe.renormalize);
  std::vector<int32_t> pos(tokens.size());
  std::iota(pos.begin(), pos.end(), 0);
  const std::vector<float> got = m.step(test::logits_request(tokens, pos)).logits,
                           want = test::tensor_f32(f, "logits");
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(test::rel_error(got, want), 1e-5);
}

TEST(LladaMoeGolden, EveryCaseEqualsTheReference) {
  const json g = json::parse(test::read_file(llada_moe_tiny() / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 10u);
  auto be = make_cpu_backend();
  Model m(llada_moe_tiny().string(), *be);
  for (const json& c : g["cases"]) {
    GenerateResult r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << c["name"];
  }
}

}  // namespace
}  // namespace mosaic
