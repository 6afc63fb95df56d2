// The LLaDA2.0-architecture MoE model that ships in models/mosaic-moe-tiny: every golden case of
// its goldens.json (tools/reference/make_model_goldens.py: llada2_generate.py in float64, prompts
// encoded as `mosaic generate --prompt` encodes them) reproduced token for token by the CPU engine,
// uncached and with the exact prefix cache.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "decode/llada2_sampler.h"
#include "golden_case.h"
#include "io/tokenizer.h"
#include "models/model.h"
#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;

std::filesystem::path shipped_moe() { return test::source_dir() / "models" / "mosaic-moe-tiny"; }

int64_t forwards(const GenerateResult& r) {
  int64_t n = 0;
  for (const StepEvent& e : r.steps) n += e.ran_model;
  return n;
}

TEST(ShippedMoeModel, GenerationsEqualTheReference) {
  auto be = make_cpu_backend();
  Model m(shipped_moe().string(), *be);
  ASSERT_EQ(m.config().family, "llada2");
  ASSERT_EQ(m.config().moe.experts, 64);
  auto tok = io::Tokenizer::load((shipped_moe() / "tokenizer.json").string());
  const json g = json::parse(test::read_file(shipped_moe() / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 4u);
  const int32_t eos = g["eos_token_id"];
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    // The prompt as `mosaic generate --prompt` encodes it: BOS + text.
    std::vector<int32_t> prompt = {*tok.bos_id};
    for (int32_t id : tok.encode(c["prompt"].get<std::string>(), true)) prompt.push_back(id);
    ASSERT_EQ(prompt, c["prompt_tokens"].get<std::vector<int32_t>>());
    const Llada2Options o = test::llada2_golden_options(c);
    GenerateResult r = llada2_generate(m, prompt, o);
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>());
    EXPECT_EQ(llada2_answer(r.tokens, r.prompt_length, o.gen_length, eos),
              c["answer_tokens"].get<std::vector<int32_t>>());
    EXPECT_EQ(forwards(r), c["nfe"].get<int64_t>());
  }
}

// The exact prefix cache: the same tokens and forwards, each forward running only the rows the
// reference's cached variant runs.
TEST(ShippedMoeModel, ThePrefixCacheGivesTheReferenceTokens) {
  auto be = make_cpu_backend();
  Model m(shipped_moe().string(), *be);
  const json g = json::parse(test::read_file(shipped_moe() / "goldens.json"));
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const test::PrefixCacheRun run = test::run_llada2_prefix_cache(m, c);
    EXPECT_EQ(run.tokens, c["output_tokens"].get<std::vector<int32_t>>());
    EXPECT_EQ(run.rows_run, run.rows_want);
  }
}

}  // namespace
}  // namespace mosaic
