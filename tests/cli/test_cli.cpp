// The mosaic command as a user runs it: exit codes, messages, output formats.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include <filesystem>

#include "test_util.h"

namespace mosaic {
namespace {

using test::run_command;

std::string mosaic(const std::string& args) { return "\"" + test::mosaic_binary() + "\" " + args; }
std::string fixture() { return (test::fixtures_dir() / "llada_tiny").string(); }
std::string config(const std::string& name) { return (test::source_dir() / "configs" / name / "config.json").string(); }

TEST(Cli, HelpListsTheCommands) {
  auto r = run_command(mosaic("--help"));
  EXPECT_EQ(r.rc, 0);
  for (const char* cmd : {"generate", "info", "bench", "eval"}) EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
}

TEST(Cli, GenerateJsonOnTheFixture) {
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture() +
                              " --prompt-tokens 1,2,3 --gen-length 16 --steps 8 --block-length 8 --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"].size(), 3u);
  EXPECT_EQ(j["output_tokens"].size(), 16u);
  EXPECT_GT(j["memory"]["arena_bytes_max"].get<double>(), 0);
  EXPECT_NE(r.err.find("block 2/2 done"), std::string::npos) << "progress per block on stderr";
}

TEST(Cli, DefaultModelWritesText) {
  auto r = run_command(mosaic("generate --backend cpu --prompt 'And God said' --gen-length 32 --steps 32 -q"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_GT(r.out.size(), 40u);
  EXPECT_EQ(r.err, "");
}

// Defaults that fit: a short --gen-length alone picks blocks that divide it and one token per
// step, and says so; a given --block-length keeps its error.
TEST(Cli, AShortGenerationNeedsNoOtherFlags) {
  auto r = run_command(mosaic("generate --backend cpu --prompt 'And God said' --gen-length 16 --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["settings"]["block_length"], 16);
  EXPECT_EQ(j["settings"]["steps"], 16);
  EXPECT_EQ(j["output_tokens"].size(), 16u) << r.out;
  EXPECT_NE(r.err.find("--block-length 16 (the largest divisor up to 32)"), std::string::npos) << r.err;
  r = run_command(mosaic("generate --backend cpu --prompt 'x' --gen-length 48 -q --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["settings"]["block_length"], 24);
  r = run_command(mosaic("generate --backend cpu --prompt 'x' --gen-length 16 --block-length 32"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("--gen-length 16 is not a multiple of --block-length 32"), std::string::npos) << r.err;
}

// --stream on a pipe: one line per step, no carriage returns or escape codes.
TEST(Cli, StreamWritesOneLinePerStepToAPipe) {
  auto r = run_command(mosaic("generate --backend cpu --prompt 'And God said' --gen-length 16 --stream -q"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  int lines = 0;
  std::istringstream in(r.err);
  for (std::string line; std::getline(in, line);) {
    EXPECT_EQ(line.rfind("[step ", 0), 0u) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 16);
}

TEST(Cli, DreamGeneratesWithItsOwnSampler) {
  // The example on the tiny Dream fixture: the reference's tokens (goldens.json).
  const std::string dream = (test::fixtures_dir() / "dream_tiny").string();
  auto r = run_command(mosaic("generate --backend cpu --model " + dream +
                              " --prompt-tokens 1,2,3 --gen-length 32 --steps 16 --block-length 32 --alg entropy "
                              "--eps 0.001 --temperature 0 --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  auto golden = nlohmann::json::parse(test::read_file(test::fixtures_dir() / "dream_tiny" / "goldens.json"));
  std::vector<int32_t> want;
  for (const auto& c : golden["cases"])
    if (c["name"] == "issue_entropy_greedy") want = c["output_tokens"].get<std::vector<int32_t>>();
  ASSERT_EQ(want.size(), 35u);
  EXPECT_EQ(j["output_tokens"].get<std::vector<int32_t>>(), std::vector<int32_t>(want.begin() + 3, want.end()));
  EXPECT_EQ(j["settings"]["sampler"], "dream");
  EXPECT_EQ(j["settings"]["alg"], "entropy");

  // Flags of the other family's sampler are refused by name, before any weight loads.
  r = run_command(mosaic("generate --backend cpu --model " + dream + " --prompt-tokens 1 --remasking random"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--remasking"), std::string::npos) << r.err;
  r = run_command(mosaic("generate --backend cpu --model " + fixture() + " --prompt-tokens 1 --alg entropy --top-p 0.9"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--alg, --top-p are not for LLaDA-family models"), std::string::npos) << r.err;
  r = run_command(mosaic("generate --backend cpu --model " + dream + " --prompt-tokens 1 --alg best"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--alg 'best'"), std::string::npos) << r.err;
}

TEST(Cli, BadFlagsAreNamed) {
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture() +
                              " --prompt-tokens 1 --gen-length 30 --block-length 8"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--gen-length 30 is not a multiple of --block-length 8"), std::string::npos) << r.err;

  r = run_command(mosaic("generate --backend cpu --model " + fixture() + " --prompt-tokens 1,99999"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("99999"), std::string::npos) << r.err;

  r = run_command(mosaic("generate --model /no/such/model --prompt hi"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("/no/such/model"), std::string::npos) << r.err;

  r = run_command(mosaic("generate --backend cpu --model " + fixture() + " --prompt-tokens ''"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--prompt-tokens is empty"), std::string::npos) << r.err;

  r = run_command(mosaic("generate --backend tpu --prompt hi"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--backend cpu"), std::string::npos) << r.err;

  r = run_command(mosaic("generate --backend cpu --memory-budget lots --prompt hi"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--memory-budget 'lots'"), std::string::npos) << r.err;

  r = run_command(mosaic("info --config " + config("llada-8b") + " --tame-target 0.9"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--tame-target is a peak-to-average ratio"), std::string::npos) << r.err;
}

TEST(Cli, BenchSegmentsChainToTheWholeStep) {
  // The shipped model (8 layers) in two segments through a hidden-state file: the last one
  // commits what the whole step commits.
  const std::string tmp = std::string(MOSAIC_TEST_TMP) + "/segments";
  std::filesystem::create_directories(tmp);
  const std::string common = "bench --backend cpu --tokens 300 --iters 1 --warmup 0 ";
  auto whole = run_command(mosaic(common + "--json " + tmp + "/whole.json"));
  ASSERT_EQ(whole.rc, 0) << whole.err;
  auto first = run_command(mosaic(common + "--segment 0:5 --hidden-out " + tmp + "/h5.safetensors"));
  ASSERT_EQ(first.rc, 0) << first.err;
  auto last = run_command(mosaic(common + "--segment 5: --hidden-in " + tmp + "/h5.safetensors --json " + tmp +
                                 "/last.json"));
  ASSERT_EQ(last.rc, 0) << last.err;
  auto commit = [&](const std::string& f) {
    return nlohmann::json::parse(test::read_file(tmp + "/" + f))["results"][0]["first_commit"];
  };
  EXPECT_EQ(commit("last.json")["position"], commit("whole.json")["position"]);
  EXPECT_EQ(commit("last.json")["token"], commit("whole.json")["token"]);
  EXPECT_NEAR(commit("last.json")["confidence"].get<double>(), commit("whole.json")["confidence"].get<double>(), 1e-6);

  auto r = run_command(mosaic(common + "--segment 5:"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("needs --hidden-in FILE"), std::string::npos) << r.err;
  r = run_command(mosaic("bench --backend cpu --tokens 200 --segment 5: --hidden-in " + tmp + "/h5.safetensors"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("same --tokens"), std::string::npos) << r.err;
  r = run_command(mosaic(common + "--segment 3:99"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("FIRST < END <= 8"), std::string::npos) << r.err;
}

TEST(Cli, PromptPastTheBudgetSaysWhatFits) {
  // 600 KiB of weights in f32 leave about 1 MiB for activations: 4096 tokens cannot fit.
  auto r = run_command(mosaic("generate --backend cpu --model " + fixture() +
                              " --memory-budget 2MiB --prompt-tokens 1,2 --gen-length 4096 --steps 128 "
                              "--block-length 32"));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.err.find("largest L that fits is"), std::string::npos) << r.err;
}

// Hostile inputs (issue 16) stop with a short message and exit code 1 or 3, never a crash.
TEST(Cli, HostileInputsGetShortClearErrors) {
  const auto dir = test::scratch_dir("cli_hostile");
  const auto deep = dir / "config.json";  // 100k levels: overflowed the stack before the depth limit
  test::write_file(deep, "{\"model_type\": \"llada\", \"d_model\": " + std::string(100000, '[') +
                             std::string(100000, ']') + "}");
  auto r = run_command(mosaic("info --config " + deep.string()));
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_NE(r.err.find(deep.string() + ": the JSON nests deeper than 64 levels"), std::string::npos) << r.err;

  // 60,000 ids (120 KB: Linux takes at most 128 KiB in one argument) with a bad one at the end.
  std::string ids;
  for (int i = 0; i < 60000; ++i) ids += "1,";
  r = run_command(mosaic("generate --backend cpu --model " + fixture() + " --prompt-tokens " + ids + "x"));
  EXPECT_EQ(r.rc, 1) << r.err.substr(0, 500);
  EXPECT_NE(r.err.find("entry 60001 'x' is not an integer token id"), std::string::npos) << r.err.substr(0, 500);
  EXPECT_LT(r.err.size(), 1000u);
  // The same ids, valid: a 60,008-token generation, refused by the budget with what fits.
  r = run_command(mosaic("generate --backend cpu --model " + fixture() + " --prompt-tokens " + ids + "1 " +
                         "--gen-length 8 --steps 8 --block-length 8 --memory-budget 2MiB"));
  EXPECT_EQ(r.rc, 3) << r.err.substr(0, 500);
  EXPECT_NE(r.err.find("largest L that fits is"), std::string::npos) << r.err.substr(0, 500);
}

TEST(Cli, InfoFromAConfigAlonePlansAndExitsThreeWhenItDoesNotFit) {
  auto r = run_command(mosaic("info --config " + config("llada-8b") + " --tokens 1000000 --memory-budget 80GiB"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("fits        yes"), std::string::npos) << r.out;
  r = run_command(mosaic("info --config " + config("llada-8b") + " --tokens 8000000 --memory-budget 80GiB"));
  EXPECT_EQ(r.rc, 3) << r.err;
  EXPECT_NE(r.out.find("fits        NO"), std::string::npos) << r.out;
  r = run_command(mosaic("info --config " + config("dream-7b") + " --tokens 800000 --memory-budget 80GiB --plan"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("timeline"), std::string::npos);
}

TEST(Cli, InfoOnAModelDirectory) {
  auto r = run_command(mosaic("info --backend cpu --model " + fixture() + " --tokens 64"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("arena"), std::string::npos);
  EXPECT_NE(r.out.find("peak live"), std::string::npos);
}

TEST(Cli, EvalPrintsLossAndAccuracy) {
  auto text = (test::source_dir() / "models" / "mosaic-tiny" / "heldout.txt").string();
  auto r = run_command(mosaic("eval --backend cpu --text " + text + " --max-windows 1 --format json"));
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["loss"].get<double>(), 0);
  EXPECT_GT(j["accuracy"].get<double>(), 0);
}

}  // namespace
}  // namespace mosaic
