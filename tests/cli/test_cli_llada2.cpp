// LLaDA2.0 from the command line: the interface against the reference's tokens, with
// and without the prefix cache, and the flags its sampler does not take.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;

std::string mosaic(const std::string& args) { return "\"" + test::mosaic_binary() + "\" " + args; }
std::string model() { return (test::fixtures_dir() / "llada2_tiny").string(); }

TEST(CliLlada2, GenerateGivesTheReferenceAnswer) {
  const json g = json::parse(test::read_file(test::fixtures_dir() / "llada2_tiny" / "goldens.json"));
  for (const char* name : {"greedy_blocks_of_8", "threshold_0.5"}) {
    json c;
    for (const json& x : g["cases"])
      if (x["name"] == name) c = x;
    ASSERT_FALSE(c.is_null()) << name;
    std::string prompt;
    for (const auto& t : c["prompt_tokens"]) prompt += (prompt.empty() ? "" : ",") + std::to_string(t.get<int>());
    for (const char* cache : {"none", "prefix"}) {
      auto r = test::run_command(mosaic(
          "generate --backend cpu --model " + model() + " --prompt-tokens " + prompt + " --gen-length " +
          std::to_string(c["gen_length"].get<int>()) + " --block-length " + std::to_string(c["block_length"].get<int>()) +
          " --steps " + std::to_string(c["steps"].get<int>()) + " --threshold " +
          std::to_string(c["threshold"].get<double>()) + " --temperature 0 --cache " + cache + " --format json -q"));
      ASSERT_EQ(r.rc, 0) << r.err;
      const json j = json::parse(r.out);
      EXPECT_EQ(j["output_tokens"], c["answer_tokens"]) << name << " cache " << cache;
      EXPECT_EQ(j["settings"]["sampler"], "llada2");
      EXPECT_EQ(j["timings"]["model_steps"], c["nfe"]) << name << " cache " << cache;
    }
  }
}

// LLaDA2.0-mini's shape planned from its config.json alone: the MoE layers and what the plan assumes.
TEST(CliLlada2, InfoPlansLlada2MiniFromItsConfig) {
  auto r = test::run_command(mosaic("info --config " + (test::source_dir() / "configs" / "llada2-mini" / "config.json").string() +
                                    " --tokens 4096 --backend cuda"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("19 of 20 layers: 256 experts of ffn 512, 8 per token"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("planned at the bound"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("16.256 B"), std::string::npos) << "LLaDA2.0-mini has 16.26 B parameters: " << r.out;
}

// bench --cache times LLaDA2.0's whole generations; the exact cache gives the uncached tokens.
TEST(CliLlada2, BenchTimesGenerationsAndTheExactCacheAgrees) {
  const std::string out = (test::scratch_dir("llada2_bench") / "bench.json").string();
  std::filesystem::create_directories(test::scratch_dir("llada2_bench"));
  auto r = test::run_command(mosaic("bench --backend cpu --model " + model() +
                                    " --tokens 77 --gen-length 32 --block-length 8 --cache none,prefix --json " + out));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(test::read_file(out));
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][1]["cache"], "prefix");
  EXPECT_EQ(j["results"][1]["agreement_with_first"], 1.0);
  EXPECT_GT(j["results"][1]["cache_bytes"].get<double>(), 0);
  EXPECT_GT(j["results"][1]["steps"]["cached"]["count"].get<int>(), 0);
}

TEST(CliLlada2, OtherSamplersFlagsAreRefused) {
  const std::string base = "generate --backend cpu --model " + model() + " --prompt-tokens 1,2,3 --gen-length 16 ";
  const std::pair<const char*, const char*> cases[] = {
      {"--cfg-scale 1", "--cfg-scale is not for LLaDA2.0-family models"},
      {"--alg entropy", "--alg is not for LLaDA2.0-family models"},
      {"--cache dual", "--cache dual: LLaDA2.0 takes none or prefix"},
      {"--threshold 1.5", "--threshold must be in [0, 1]"},
      {"--top-p 0", "--top-p must be in (0, 1]"},
      {"--minimal-topk 0", "--minimal-topk must be in [1, --gen-length]"},
  };
  for (const auto& [flags, message] : cases) {
    auto r = test::run_command(mosaic(base + flags));
    EXPECT_NE(r.rc, 0) << flags;
    EXPECT_NE(r.err.find(message), std::string::npos) << flags << ": " << r.err;
  }
  auto r = test::run_command(mosaic("generate --backend cpu --model " + (test::fixtures_dir() / "llada_tiny").string() +
                                    " --prompt-tokens 1,2,3 --gen-length 16 --steps 16 --eos-early-stop"));
  EXPECT_NE(r.err.find("--eos-early-stop is not for LLaDA-family models"), std::string::npos) << r.err;
}

// eval's loss is LLaDA's and Dream's objective: a block-diffusion model is refused, not scored wrongly.
TEST(CliLlada2, EvalLossIsRefusedForBlockDiffusion) {
  auto r = test::run_command(mosaic("eval --backend cpu --model " +
                                    (test::source_dir() / "models" / "mosaic-moe-tiny").string() + " --text " +
                                    (test::source_dir() / "models" / "mosaic-tiny" / "heldout.txt").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("LLaDA2.0 is a block-diffusion model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mosaic
