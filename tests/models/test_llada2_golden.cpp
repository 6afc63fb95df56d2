// LLaDA2.0 (MoE, block-causal) on the CPU against the PyTorch reference of the official code
// (tools/reference: llada2.py, llada2_generate.py): the forward's logits with the block-causal
// mask and without it, and every generate() case token for token.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/llada2_sampler.h"
#include "golden_case.h"
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

// Every case: the whole sequence when generation stopped, the answer generate() returns, and
// the number of forwards (a block ends when it has no masks left; an eos ends the generation).
TEST(Llada2Golden, EveryCaseEqualsTheReference) {
  const json g = json::parse(test::read_file(llada2_tiny() / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 15u);
  auto be = make_cpu_backend();
  Model m(llada2_tiny().string(), *be);
  const int32_t eos = g["eos_token_id"];
  for (const json& c : g["cases"]) {
    const Llada2Options o = test::llada2_golden_options(c);
    const auto prompt = c["prompt_tokens"].get<std::vector<int32_t>>();
    GenerateResult r = llada2_generate(m, prompt, o);
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << c["name"];
    EXPECT_EQ(llada2_answer(r.tokens, r.prompt_length, o.gen_length, eos),
              c["answer_tokens"].get<std::vector<int32_t>>())
        << c["name"];
    int64_t forwards = 0;
    for (const StepEvent& e : r.steps) forwards += e.ran_model;
    EXPECT_EQ(forwards, c["nfe"].get<int64_t>()) << c["name"];
  }
}

// The exact prefix cache: the same tokens and forwards as the uncached loop, each forward
// running only the rows the reference's cached variant runs (its trace's cached_rows).
TEST(Llada2Golden, ThePrefixCacheGivesTheUncachedTokens) {
  const json g = json::parse(test::read_file(llada2_tiny() / "goldens.json"));
  auto be = make_cpu_backend();
  Model m(llada2_tiny().string(), *be);
  for (const json& c : g["cases"]) {
    const test::PrefixCacheRun run = test::run_llada2_prefix_cache(m, c);
    EXPECT_EQ(run.tokens, c["output_tokens"].get<std::vector<int32_t>>()) << c["name"];
    EXPECT_EQ(run.rows_run, run.rows_want) << c["name"];
  }
}

// A copy of the fixture in a scratch directory, its config.json and tensors edited: `edit` may
// change a tensor's shape (its data then shrinks to fit) or return false to leave it out.
fs::path edited_fixture(const std::string& name, const std::function<void(json&)>& config,
                        const std::function<bool(io::TensorInfo&)>& edit) {
  const fs::path dir = test::scratch_dir(name);
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(llada2_tiny() / f, dir / f,
                                                                                  fs::copy_options::overwrite_existing);
  json c = json::parse(test::read_file(llada2_tiny() / "config.json"));
  config(c);
  test::write_file(dir / "config.json", c.dump(2));
  auto st = io::SafetensorsFile::open((llada2_tiny() / "model.safetensors").string());
  json header = json::object();
  std::string data;
  for (io::TensorInfo t : st.tensors()) {
    const size_t elem = t.nbytes / static_cast<size_t>(std::max<int64_t>(t.numel(), 1));
    if (!edit(t)) continue;
    const size_t bytes = static_cast<size_t>(t.numel()) * elem;
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + bytes}}};
    data.append(reinterpret_cast<const char*>(t.data), std::min(bytes, t.nbytes));
    data.resize(data.size() + (bytes > t.nbytes ? bytes - t.nbytes : 0));
  }
  const std::string h = header.dump();
  const uint64_t n = h.size();
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h << data;
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

// Bad MoE configs and checkpoints get errors that name the field or the tensor.
TEST(Llada2Golden, BadMoeConfigsAndTensorsAreNamed) {
  auto keep = [](io::TensorInfo&) { return true; };
  auto set = [](const char* key, int v) { return [=](json& c) { c[key] = v; }; };
  EXPECT_NE(load_error(edited_fixture("llada2_topk", set("num_experts_per_tok", 17), keep))
                .find("num_experts_per_tok 17 must be in [1, num_experts 16]"),
            std::string::npos);
  EXPECT_NE(load_error(edited_fixture("llada2_groups", set("n_group", 3), keep))
                .find("n_group 3 does not divide num_experts 16"),
            std::string::npos);
  EXPECT_NE(load_error(edited_fixture("llada2_topk_group", set("topk_group", 5), keep))
                .find("topk_group 5 must be in [1, n_group 4]"),
            std::string::npos);
  const std::string missing = load_error(edited_fixture("llada2_missing", [](json&) {}, [](io::TensorInfo& t) {
    return t.name != "model.layers.2.mlp.experts.7.up_proj.weight";
  }));
  EXPECT_NE(missing.find("model.layers.2.mlp.experts.7.up_proj.weight"), std::string::npos) << missing;
  const std::string bias = load_error(edited_fixture("llada2_bias", [](json&) {}, [](io::TensorInfo& t) {
    if (t.name == "model.layers.1.mlp.gate.expert_bias") t.shape = {8};
    return true;
  }));
  EXPECT_NE(bias.find("model.layers.1.mlp.gate.expert_bias"), std::string::npos) << bias;
  EXPECT_NE(bias.find("8"), std::string::npos) << bias;
}

}  // namespace
}  // namespace mosaic
