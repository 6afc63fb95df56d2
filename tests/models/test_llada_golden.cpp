// The CPU engine against the PyTorch reference (tools/reference): forward logits within a
// stated tolerance, and generated tokens equal to the committed goldens for every case.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/llada_sampler.h"
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

fs::path tiny() { return test::fixtures_dir() / "llada_tiny"; }

struct RefLogits {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int64_t vocab = 0;
};

RefLogits load_reference_logits() {
  auto f = io::SafetensorsFile::open((tiny() / "reference_logits.safetensors").string());
  const io::TensorInfo* t = f.find("tokens");
  const io::TensorInfo* l = f.find("logits");
  EXPECT_TRUE(t && l);
  RefLogits r;
  r.tokens.resize(static_cast<size_t>(t->numel()));
  std::memcpy(r.tokens.data(), t->data, t->nbytes);
  r.logits.resize(static_cast<size_t>(l->numel()));
  to_f32(l->dtype, l->data, r.logits.data(), r.logits.size());
  r.vocab = l->shape[1];
  return r;
}

std::vector<float> engine_logits(Model& m, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> pos(tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  return m.step(test::logits_request(tokens, pos)).logits;
}

TEST(LladaGolden, ForwardLogitsMatchTheReference) {
  auto be = make_cpu_backend();
  Model m(tiny().string(), *be);
  RefLogits ref = load_reference_logits();
  ASSERT_EQ(ref.vocab, m.config().embedding_size);
  auto got = engine_logits(m, ref.tokens);
  ASSERT_EQ(got.size(), ref.logits.size());
  // fp32 engine vs a float64 reference: summation order only.
  EXPECT_LT(rel_error(got, ref.logits), 1e-5);
  for (size_t r = 0; r < ref.tokens.size(); ++r) {
    auto row = [&](const std::vector<float>& v) { return v.begin() + static_cast<int64_t>(r) * ref.vocab; };
    EXPECT_EQ(std::max_element(row(got), row(got) + ref.vocab) - row(got),
              std::max_element(row(ref.logits), row(ref.logits) + ref.vocab) - row(ref.logits))
        << "row " << r;
  }
}

TEST(LladaGolden, FusedAttProjGivesTheSameLogits) {
  auto be = make_cpu_backend();
  Model separate(tiny().string(), *be);
  Model fused((test::fixtures_dir() / "llada_tiny_fused").string(), *be);
  ASSERT_TRUE(fused.fused_qkv());
  ASSERT_FALSE(separate.fused_qkv());
  RefLogits ref = load_reference_logits();
  EXPECT_LT(rel_error(engine_logits(fused, ref.tokens), engine_logits(separate, ref.tokens)), 1e-6);
}

TEST(LladaGolden, MaskedLastLayerGivesTheRowsOfTheFullOne) {
  // The last layer runs its queries and FFN on the head's rows only: the logits of those rows
  // must be the full model's, under chunking too.
  auto be = make_cpu_backend();
  RefLogits ref = load_reference_logits();
  const int64_t L = static_cast<int64_t>(ref.tokens.size());
  const std::vector<int32_t> pos = {1, 4, 5, 9, static_cast<int32_t>(L - 1)};
  Model full(tiny().string(), *be);
  full.set_masked_last_layer(false);
  Model masked(tiny().string(), *be);
  ASSERT_TRUE(masked.graph_options(test::logits_kind()).masked_last_layer);
  ASSERT_FALSE(full.graph_options(test::logits_kind()).masked_last_layer);
  std::vector<float> a = full.step(test::logits_request(ref.tokens, pos)).logits;
  std::vector<float> b = masked.step(test::logits_request(ref.tokens, pos)).logits;
  ASSERT_EQ(a.size(), pos.size() * static_cast<size_t>(ref.vocab));
  EXPECT_LT(rel_error(b, a), 1e-6);
  std::vector<float> want;
  for (int32_t p : pos)
    want.insert(want.end(), ref.logits.begin() + p * ref.vocab, ref.logits.begin() + (p + 1) * ref.vocab);
  EXPECT_LT(rel_error(b, want), 1e-5);

  Model chunked(tiny().string(), *be);
  const Dims d{L, static_cast<int64_t>(pos.size())};
  chunked.set_activation_budget(masked.plan(d, test::logits_kind()).arena_bytes() * 8 / 10);
  const MemoryPlan& p = chunked.plan(d, test::logits_kind());
  ASSERT_GT(*std::max_element(p.chunks.begin(), p.chunks.end()), 1) << "the budget should force chunking";
  EXPECT_LT(rel_error(chunked.step(test::logits_request(ref.tokens, pos)).logits, a), 1e-6);
}

TEST(LladaGolden, EveryGraphOptionHasItsOwnGraph) {
  // Settings changed between steps must never run an older graph built without them.
  auto be = make_cpu_backend();
  Model m(tiny().string(), *be);
  const Graph* masked = &m.graph(test::logits_kind());
  EXPECT_EQ(&m.graph(test::logits_kind()), masked);
  m.set_masked_last_layer(false);
  const Graph* full = &m.graph(test::logits_kind());
  EXPECT_NE(full, masked);
  m.set_segment(0, 1);
  EXPECT_NE(&m.graph(test::logits_kind()), full);
  EXPECT_NE(&m.graph(), &m.graph(test::logits_kind())) << "sampling and logits heads differ";
}

TEST(LladaGolden, SegmentedStepEqualsTheWholeStep) {
  // Layers run in pieces that hand the hidden state on through the host: the last piece's
  // logits are the whole step's.
  auto be = make_cpu_backend();
  RefLogits ref = load_reference_logits();
  const std::vector<int32_t> pos = {2, 3, 11};
  Model whole(tiny().string(), *be);
  const int n = whole.config().n_layers;
  ASSERT_GE(n, 2);
  std::vector<float> want = whole.step(test::logits_request(ref.tokens, pos)).logits;

  Model first(tiny().string(), *be), rest(tiny().string(), *be);
  first.set_segment(0, 1);
  StepOutputs a = first.step(test::logits_request(ref.tokens, pos));
  EXPECT_TRUE(a.logits.empty()) << "a segment that stops early runs no head";
  ASSERT_EQ(a.hidden.size(), ref.tokens.size() * static_cast<size_t>(whole.config().d_model) * sizeof(float));
  rest.set_segment(1, -1);
  EXPECT_THROW(rest.step(test::logits_request(ref.tokens, pos)), Error) << "no hidden state given";
  EXPECT_LT(rel_error(rest.step(test::logits_request(ref.tokens, pos, &a.hidden)).logits, want), 1e-6);

  std::vector<std::byte> short_state(a.hidden.begin(), a.hidden.end() - 4);
  EXPECT_THROW(rest.step(test::logits_request(ref.tokens, pos, &short_state)), Error)
      << "a hidden state of the wrong size";
}

TEST(LladaGolden, ChunkedStepEqualsUnchunked) {
  // Every row goes through the sampling head, so the head's [rows, V] logits are local to
  // a chunkable region: a tight budget must chunk the trunk and the head alike.
  auto be = make_cpu_backend();
  RefLogits ref = load_reference_logits();
  std::vector<int32_t> pos(ref.tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  const Dims d{static_cast<int64_t>(pos.size()), static_cast<int64_t>(pos.size())};
  for (double temperature : {0.0, 0.8}) {
    SampleParams sp;
    sp.temperature = temperature;
    sp.seed = 5;
    sp.step = 3;
    Model plain(tiny().string(), *be);
    const size_t full = plain.plan(d).arena_bytes();
    StepOutputs a = plain.step(test::sample_request(ref.tokens, pos, sp));
    Model chunked(tiny().string(), *be);
    chunked.set_activation_budget(full * 7 / 10);
    const MemoryPlan& p = chunked.plan(d);
    EXPECT_LE(p.arena_bytes(), full * 7 / 10);
    ASSERT_GT(*std::max_element(p.chunks.begin(), p.chunks.end()), 1) << "the budget should force chunking";
    StepOutputs b = chunked.step(test::sample_request(ref.tokens, pos, sp));
    EXPECT_EQ(a.token, b.token);
    EXPECT_EQ(a.order, b.order);
    for (size_t i = 0; i < a.conf.size(); ++i) EXPECT_NEAR(a.conf[i], b.conf[i], 1e-6);
  }
}

json goldens() { return json::parse(test::read_file(tiny() / "goldens.json")); }


TEST(LladaGolden, GenerationsEqualTheReferenceTokens) {
  auto be = make_cpu_backend();
  Model m(tiny().string(), *be);
  json g = goldens();
  ASSERT_GE(g["cases"].size(), 8u);
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>());
  }
}

TEST(LladaGolden, GenerationsHoldUnderChunking) {
  auto be = make_cpu_backend();
  Model m(tiny().string(), *be);
  json g = goldens();
  // 70% of what the longest case's first step needs unchunked: every long step must chunk.
  size_t longest = 0;
  for (const auto& c : g["cases"]) {
    int64_t L = static_cast<int64_t>(c["prompt_tokens"].size()) + c["gen_length"].get<int64_t>();
    longest = std::max(longest, m.plan(Dims{L, c["block_length"].get<int64_t>()}).arena_bytes());
  }
  m.set_activation_budget(longest * 7 / 10);
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto r = llada_generate(m, c["prompt_tokens"].get<std::vector<int32_t>>(), test::golden_options(c));
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>());
  }
}

// --- bad checkpoints: clear errors that name the tensor / field ---------------------

fs::path copy_fixture_with_config(const std::string& name, const std::function<void(json&)>& edit) {
  fs::path dir = test::scratch_dir(name);
  for (const auto& e : fs::directory_iterator(tiny())) fs::copy(e.path(), dir / e.path().filename());
  json cfg = json::parse(test::read_file(dir / "config.json"));
  edit(cfg);
  test::write_file(dir / "config.json", cfg.dump(2));
  return dir;
}

std::string load_error(const fs::path& dir) {
  auto be = make_cpu_backend();
  try {
    Model m(dir.string(), *be);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LladaLoad, MissingTensorIsNamed) {
  auto dir = copy_fixture_with_config("more_layers", [](json& c) { c["n_layers"] = c["n_layers"].get<int>() + 1; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("blocks.2."), std::string::npos) << e;
}

TEST(LladaLoad, WrongShapeIsNamed) {
  auto dir = copy_fixture_with_config("wider", [](json& c) { c["mlp_hidden_size"] = c["mlp_hidden_size"].get<int>() + 8; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("ff_proj"), std::string::npos) << e;
}

TEST(LladaLoad, UnknownArchitectureIsRefused) {
  auto dir = copy_fixture_with_config("gpt2", [](json& c) { c["model_type"] = "gpt2"; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("unknown model_type 'gpt2'"), std::string::npos) << e;
}

TEST(LladaLoad, MissingDirectoryAndConfig) {
  EXPECT_NE(load_error("/nonexistent/model").find("does not exist"), std::string::npos);
  fs::path dir = test::scratch_dir("no_config");
  EXPECT_NE(load_error(dir).find("config.json"), std::string::npos);
}

TEST(LladaLoad, TokenOutsideTheVocabularyIsRefused) {
  auto be = make_cpu_backend();
  Model m(tiny().string(), *be);
  std::vector<int32_t> tokens = {1, 2, static_cast<int32_t>(m.config().embedding_size)};
  EXPECT_THROW(m.step(test::sample_request(tokens, {0}, SampleParams{})), Error);
}

}  // namespace
}  // namespace mosaic
