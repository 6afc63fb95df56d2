// Dream on the CPU against the PyTorch reference of the official code (tools/reference:
// dream.py, dream_generate.py): the forward's logits (q/k/v biases, Qwen2 names, GQA, the
// shift by one) within fp32 tolerance, and every sampler case token for token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/dream_sampler.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "golden_case.h"
#include "reference_tensors.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::rel_error;
using test::tensor_f32;

fs::path dream_tiny() { return test::fixtures_dir() / "dream_tiny"; }

json goldens() { return json::parse(test::read_file(dream_tiny() / "goldens.json")); }

TEST(DreamGolden, ForwardLogitsEqualTheReference) {
  auto f = io::SafetensorsFile::open((dream_tiny() / "reference_logits.safetensors").string());
  const io::TensorInfo* t = f.find("tokens");
  ASSERT_TRUE(t);
  std::vector<int32_t> tokens(static_cast<size_t>(t->numel()));
  std::memcpy(tokens.data(), t->data, t->nbytes);
  const std::vector<float> raw = tensor_f32(f, "logits"), shifted = tensor_f32(f, "logits_shifted");

  auto be = make_cpu_backend();
  Model m(dream_tiny().string(), *be);
  ASSERT_EQ(m.config().family, "dream");
  ASSERT_TRUE(m.config().qkv_bias);
  const int64_t V = m.config().embedding_size;
  std::vector<int32_t> pos(tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  // Position p is predicted by row p - 1 (row 0 for p = 0): the sampler's shifted logits.
  std::vector<float> got = m.step(test::logits_request(tokens, pos)).logits;
  ASSERT_EQ(got.size(), shifted.size());
  EXPECT_LT(rel_error(got, shifted), 1e-5);
  // ... and the shift is a shift: position 5's logits are the raw row 4, not row 5.
  std::vector<float> p5 = m.step(test::logits_request(tokens, {5})).logits;
  std::vector<float> row4(raw.begin() + 4 * V, raw.begin() + 5 * V), row5(raw.begin() + 5 * V, raw.begin() + 6 * V);
  EXPECT_LT(rel_error(p5, row4), 1e-5);
  EXPECT_GT(rel_error(p5, row5), 0.1);
}

void expect_goldens(Model& m) {
  json g = goldens();
  ASSERT_GE(g["cases"].size(), 15u);
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto r = dream_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::dream_golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>());
  }
}

TEST(DreamGolden, GenerationsEqualTheReferenceTokens) {
  auto be = make_cpu_backend();
  Model m(dream_tiny().string(), *be);
  expect_goldens(m);
}

TEST(DreamGolden, GenerationsHoldUnderChunking) {
  auto be = make_cpu_backend();
  Model m(dream_tiny().string(), *be);
  size_t longest = 0;
  Dims longest_dims;
  const json g = goldens();
  for (const auto& c : g["cases"]) {
    const int64_t L = static_cast<int64_t>(c["prompt_tokens"].size()) + c["gen_length"].get<int64_t>();
    const Dims d{L, c["gen_length"].get<int64_t>()};
    if (m.plan(d).arena_bytes() > longest) longest = m.plan(d).arena_bytes(), longest_dims = d;
  }
  m.set_activation_budget(longest * 7 / 10);
  const MemoryPlan& p = m.plan(longest_dims);
  ASSERT_GT(*std::max_element(p.chunks.begin(), p.chunks.end()), 1) << "the budget should force chunking";
  expect_goldens(m);
}

TEST(DreamGolden, StochasticRunsAreReproducibleBySeed) {
  auto be = make_cpu_backend();
  Model m(dream_tiny().string(), *be);
  for (DreamAlg alg : {DreamAlg::Origin, DreamAlg::Entropy}) {
    DreamOptions o;
    o.gen_length = 24;
    o.steps = 12;
    o.alg = alg;
    o.temperature = 1.0;
    o.seed = 11;
    auto a = dream_generate(m, {1, 2, 3}, o);
    auto b = dream_generate(m, {1, 2, 3}, o);
    EXPECT_EQ(a.tokens, b.tokens) << dream_alg_name(alg);
    o.seed = 12;
    EXPECT_NE(dream_generate(m, {1, 2, 3}, o).tokens, a.tokens) << dream_alg_name(alg) << ": the seed must matter";
  }
}

}  // namespace
}  // namespace mosaic
