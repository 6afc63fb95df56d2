// Cached decoding from the command line: the example against the reference's tokens,
// the flags' errors, `info --cache` and `bench --cache`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;
using test::run_command;

std::string mosaic(const std::string& args) { return "\"" + test::mosaic_binary() + "\" " + args; }
std::string fixture(const char* name) { return (test::fixtures_dir() / name).string(); }
std::string config(const std::string& name) { return (test::source_dir() / "configs" / name / "config.json").string(); }

std::string join(const json& ids) {
  std::string s;
  for (const auto& t : ids) s += (s.empty() ? "" : ",") + std::to_string(t.get<int>());
  return s;
}

json golden(const char* fixture_name, const std::string& name) {
  json g = json::parse(test::read_file(test::fixtures_dir() / fixture_name / "cache_goldens.json"));
  for (const auto& c : g["cases"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no golden " << name;
  return {};
}

TEST(CliCache, DualCacheWithThresholdGivesTheReferenceTokens) {
  const json c = golden("llada_tiny", "dual_threshold");
  ASSERT_FALSE(c.is_null());
  auto r = run_command(mosaic(
      "generate --backend cpu --model " + fixture("llada_tiny") + " --prompt-tokens " + join(c["prompt_tokens"]) +
      " --gen-length 32 --steps 32 --block-length 8 --cache dual --threshold " +
      std::to_string(c["threshold"].get<double>()) + " --temperature 0 --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(r.out);
  const auto want = c["output_tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(j["output_tokens"].get<std::vector<int32_t>>(),
            std::vector<int32_t>(want.begin() + static_cast<long>(c["prompt_tokens"].size()), want.end()));
  EXPECT_EQ(j["settings"]["cache"], "dual");
  EXPECT_GT(j["memory"]["cache_bytes"].get<double>(), 0);
  // Threshold decoding commits more than one token per step here.
  EXPECT_LT(j["timings"]["model_steps"].get<int>(), 32);
  EXPECT_NE(r.err.find("dual cache:"), std::string::npos) << "the cache's size on stderr";
}

TEST(CliCache, DreamSparseCacheGivesTheReferenceTokens) {
  const json c = golden("dream_tiny", "sparse_topk_margin");
  ASSERT_FALSE(c.is_null());
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture("dream_tiny") + " --prompt-tokens " +
                              join(c["prompt_tokens"]) + " --gen-length 32 --steps 16 --block-length 8 --alg "
                              "topk_margin --cache sparse --sparse-keep 0.5 --sparse-kernel 3 --format json -q"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto want = c["output_tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(json::parse(r.out)["output_tokens"].get<std::vector<int32_t>>(),
            std::vector<int32_t>(want.begin() + static_cast<long>(c["prompt_tokens"].size()), want.end()));
}

TEST(CliCache, BadFlagsAreNamed) {
  const std::string base = "generate --backend cpu --model " + fixture("llada_tiny") +
                           " --prompt-tokens 1,2,3 --gen-length 16 --steps 16 --block-length 8 ";
  const std::pair<const char*, const char*> cases[] = {
      {"--cache full", "--cache 'full' is not known"},
      {"--cache sparse --sparse-keep 0", "--sparse-keep must be in (0, 1]"},
      {"--cache sparse --sparse-keep 1.5", "--sparse-keep must be in (0, 1]"},
      {"--cache sparse --sparse-kernel 2", "--sparse-kernel must be an odd width"},
      {"--cache sparse --sparse-kernel 0", "--sparse-kernel must be an odd width"},
      {"--threshold 0", "--threshold must be in (0, 1]"},
      {"--threshold 1.5", "--threshold must be in (0, 1]"},
      {"--threshold -0.1", "--threshold must be in (0, 1]"},
  };
  for (const auto& [flags, message] : cases) {
    auto r = run_command(mosaic(base + flags));
    EXPECT_NE(r.rc, 0) << flags;
    EXPECT_NE(r.err.find(message), std::string::npos) << flags << ": " << r.err;
  }
  // Flags that would do nothing are refused, naming the flag.
  const std::string m = " --model " + fixture("llada_tiny");
  const std::string text = (test::fixtures_dir() / "llada_tiny" / "config.json").string();
  const std::pair<std::string, const char*> unused[] = {
      {base + "--sparse-keep 0.3", "--sparse-keep applies to the sparse cache only"},
      {base + "--cache dual --sparse-kernel 5", "--sparse-kernel applies to the sparse cache only"},
      {"info" + m + " --block 64", "--block plans a cached generation"},
      {"info" + m + " --cache dual --sparse-keep 0.3", "--sparse-keep applies to the sparse cache only"},
      {"bench --backend cpu" + m + " --tokens 64 --gen-length 16 --block-length 8 --cache none,dual --iters 3",
       "does not combine with"},
      {"bench --backend cpu" + m + " --tokens 64 --gen-length 16 --block-length 8 --cache none,dual --sparse-keep 0.3",
       "--sparse-keep applies to the sparse cache only"},
      {"eval --backend cpu" + m + " --text " + text + " --prompt-length 8", "--prompt-length requires --generate"},
      {"eval --backend cpu" + m + " --text " + text + " --generate --seq-len 8", "--seq-len excludes --generate"},
      {"eval --backend cpu" + m + " --text " + text + " --generate --cache none,dual --sparse-kernel 5",
       "--sparse-kernel applies to the sparse cache only"},
  };
  for (const auto& [args, message] : unused) {
    auto r = run_command(mosaic(args));
    EXPECT_NE(r.rc, 0) << args;
    EXPECT_NE((r.err + r.out).find(message), std::string::npos) << args << ": " << r.err << r.out;
  }
  // Dream's cached schedule needs two steps per block (the first commits the block's first token).
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture("dream_tiny") +
                              " --prompt-tokens 1,2,3 --gen-length 16 --steps 2 --block-length 8 --cache dual"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("at least 2 steps per block"), std::string::npos) << r.err;
  r = run_command(mosaic("generate --backend cpu --model " + fixture("dream_tiny") +
                         " --prompt-tokens 1,2,3 --gen-length 16 --steps 16 --block-length 8 --cache dual --alg origin"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("not origin"), std::string::npos) << r.err;
}

TEST(CliCache, InfoPlansACachedGenerationAndSaysWhatFits) {
  // LLaDA-8B, a 128k-token dual cache: 64 GiB of caches, planned without weights or a GPU.
  auto r = run_command(mosaic("info --config " + config("llada-8b") +
                              " --cache dual --tokens 131072 --block 32 --memory-budget 140GB"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("caches      64.00 GiB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step cached L=32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fits        yes"), std::string::npos) << r.out;
  r = run_command(mosaic("info --config " + config("llada-8b") +
                         " --cache dual --tokens 400000 --block 32 --memory-budget 140GB"));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.out.find("fits        NO"), std::string::npos) << r.out;
  // Half the cache: the sparse generation of the same length fits.
  r = run_command(mosaic("info --config " + config("llada-8b") +
                         " --cache sparse --tokens 400000 --block 32 --memory-budget 140GB"));
  EXPECT_EQ(r.rc, 0) << r.out;
}

TEST(CliCache, GenerateRefusesACacheThatDoesNotFitUpFront) {
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture("llada_tiny") +
                              " --memory-budget 3MiB --prompt-tokens 1,2 --gen-length 2048 --steps 2048 "
                              "--block-length 32 --cache dual"));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.err.find("dual-cache generation of 2050 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the largest L that fits is"), std::string::npos) << r.err;
}

TEST(CliCache, BenchTimesWholeGenerationsPerMode) {
  auto r = run_command(mosaic("bench --backend cpu --model " + fixture("llada_tiny") +
                              " --tokens 128 --gen-length 32 --block-length 8 --cache none,dual,sparse "
                              "--warmup-generations 0"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
  for (const char* mode : {"none", "dual", "sparse"}) EXPECT_NE(r.out.find(mode), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vs none"), std::string::npos) << r.out;
  // A mode that cannot run (Dream's cached blocks need two steps) fails the command.
  r = run_command(mosaic("bench --backend cpu --model " + fixture("dream_tiny") +
                         " --tokens 64 --gen-length 8 --block-length 1 --cache none,dual --warmup-generations 0"));
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("failed"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace mosaic
