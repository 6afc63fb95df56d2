// The model that ships in models/mosaic-tiny: the reference's greedy (and sampled) tokens,
// and the held-out diffusion loss the reference measured, reproduced by the CPU engine.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "decode/diffusion_loss.h"
#include "decode/llada_sampler.h"
#include "io/tokenizer.h"
#include "models/model.h"
#include "golden_case.h"
#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;

std::filesystem::path shipped() { return test::source_dir() / "models" / "mosaic-tiny"; }

TEST(ShippedModel, GenerationsEqualTheReference) {
  auto be = make_cpu_backend();
  Model m(shipped().string(), *be);
  auto tok = io::Tokenizer::load((shipped() / "tokenizer.json").string());
  json g = json::parse(test::read_file(shipped() / "goldens.json"));
  ASSERT_GE(g["cases"].size(), 5u);
  for (const auto& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    // The prompt as `mosaic generate --prompt` encodes it: BOS + text.
    std::vector<int32_t> prompt = {*tok.bos_id};
    for (int32_t id : tok.encode(c["prompt"].get<std::string>(), true)) prompt.push_back(id);
    ASSERT_EQ(prompt, c["prompt_tokens"].get<std::vector<int32_t>>());
    GenerateOptions o = test::golden_options(c);
    auto r = llada_generate(m, prompt, o);
    EXPECT_EQ(r.tokens, c["output_tokens"].get<std::vector<int32_t>>());
  }
}

TEST(ShippedModel, HeldOutLossAgreesWithTheReference) {
  auto be = make_cpu_backend();
  Model m(shipped().string(), *be);
  auto tok = io::Tokenizer::load((shipped() / "tokenizer.json").string());
  json ref = json::parse(test::read_file(shipped() / "eval_reference.json"));
  auto ids = tok.encode(test::read_file(shipped() / "heldout.txt"), false);
  LossOptions o;
  o.seq_len = ref["seq_len"];
  o.t_draws = ref["t_draws"];
  o.max_windows = ref["windows"];
  o.seed = ref["seed"];
  LossResult r = diffusion_loss(m, ids, o, tok.bos_id);
  EXPECT_EQ(r.windows, ref["windows"].get<int64_t>());
  EXPECT_EQ(r.masked, ref["masked"].get<int64_t>());  // the same masks, token for token
  EXPECT_NEAR(r.loss, ref["loss"].get<double>(), 1e-4 * ref["loss"].get<double>());
  EXPECT_NEAR(r.masked_ce, ref["masked_ce"].get<double>(), 1e-4 * ref["masked_ce"].get<double>());
  EXPECT_NEAR(r.accuracy(), ref["accuracy"].get<double>(), 2.0 / static_cast<double>(r.masked));
}

}  // namespace
}  // namespace mosaic
