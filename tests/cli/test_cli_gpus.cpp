// `--gpus N` as a user runs it, with CPU ranks (threads) standing in for GPUs: generate and bench
// give one device's tokens, info plans one rank's shard and the longest step N GPUs fit, and
// what a sharded step cannot run is refused by flag.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;
using test::run_command;

std::string mosaic(const std::string& args) { return "\"" + test::mosaic_binary() + "\" " + args; }
std::string fixture(const std::string& name) { return (test::fixtures_dir() / name).string(); }
std::string config(const std::string& name) { return (test::source_dir() / "configs" / name / "config.json").string(); }

json generate(const std::string& model, int gpus, const std::string& extra) {
  const std::string ranks = gpus > 0 ? " --gpus " + std::to_string(gpus) : "";  // 0: no --gpus
  auto r = run_command(mosaic("generate --backend cpu --model " + model + ranks + " --format json " + extra));
  EXPECT_EQ(r.rc, 0) << r.err;
  return r.rc == 0 ? json::parse(r.out) : json{};
}

TEST(CliGpus, GenerateGivesOneDevicesTokens) {
  const std::string llada = "--prompt-tokens 1,2,3,4,5 --gen-length 24 --steps 12 --block-length 8";
  const json one = generate(fixture("llada_tiny"), 1, llada);
  for (int gpus : {2, 3}) {
    const json many = generate(fixture("llada_tiny"), gpus, llada);
    EXPECT_EQ(many["output_tokens"], one["output_tokens"]) << gpus;
    EXPECT_EQ(many["gpus"], gpus);
    // auto: the fixture's 4 query and 2 key/value heads make the all-gather the smaller exchange
    EXPECT_EQ(many["exchange"], "all-gather") << gpus;
  }
  EXPECT_EQ(generate(fixture("llada_moe_tiny"), 4, llada)["exchange"], "all-to-all");  // 4/4 heads on 4
  for (const char* exchange : {"all-gather", "all-to-all"}) {
    const json chosen = generate(fixture("llada_tiny"), 4, llada + " --exchange " + exchange);
    EXPECT_EQ(chosen["exchange"], exchange);
    EXPECT_EQ(chosen["output_tokens"], one["output_tokens"]) << exchange;
  }
  // --devices sets the count (a CPU rank has no device: only the count matters there)
  const json listed = generate(fixture("llada_tiny"), 0, llada + " --devices 0,0,0,0");
  EXPECT_EQ(listed["gpus"], 4);
  EXPECT_EQ(listed["output_tokens"], one["output_tokens"]);
  const std::string dream = "--prompt-tokens 1,2,3 --gen-length 16 --steps 8 --temperature 0.5 --seed 3";
  EXPECT_EQ(generate(fixture("dream_tiny"), 2, dream)["output_tokens"],
            generate(fixture("dream_tiny"), 1, dream)["output_tokens"]);
  // the shipped model with its tokenizer, as the README runs it
  auto r = run_command(mosaic("generate --backend cpu --gpus 2 --prompt 'And God said' --gen-length 32 --steps 32"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("sharded across 2 CPU ranks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("attention exchange: all-gather"), std::string::npos) << r.err;
}

TEST(CliGpus, BenchTimesTheShardedStep) {
  auto bench = [](int gpus) {
    const auto path = test::scratch_dir("cli_gpus_bench") / ("bench" + std::to_string(gpus) + ".json");
    auto r = run_command(mosaic("bench --backend cpu --model " + fixture("llada_tiny") + " --tokens 96,160 --gen-length 32 "
                                "--block-length 32 --warmup 0 --iters 2 --gpus " + std::to_string(gpus) +
                                " --json " + path.string()));
    EXPECT_EQ(r.rc, 0) << r.err;
    return json::parse(test::read_file(path));
  };
  const json one = bench(1), three = bench(3);
  EXPECT_EQ(three["gpus"], 3);
  EXPECT_EQ(three["exchange"], "all-gather");  // 4 heads do not split 3 ways
  EXPECT_FALSE(one.contains("exchange"));
  ASSERT_EQ(three["results"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GT(three["results"][i]["ms_per_step"].get<double>(), 0);
    EXPECT_EQ(three["results"][i]["first_commit"]["token"], one["results"][i]["first_commit"]["token"]);
    EXPECT_EQ(three["results"][i]["first_commit"]["position"], one["results"][i]["first_commit"]["position"]);
    // one rank's plan: a third of the rows
    EXPECT_LT(three["results"][i]["arena_bytes"].get<double>(), one["results"][i]["arena_bytes"].get<double>());
  }
}

TEST(CliGpus, InfoPlansOneRankAndTheLongestStepThatFits) {
  auto info = [](int gpus, const std::string& extra = "") {
    return run_command(mosaic("info --config " + config("llada-8b") + " --tokens 1048576 --masked 32 "
                              "--memory-budget 140GiB --gpus " + std::to_string(gpus) + extra));
  };
  auto one = info(1), eight = info(8), gathered = info(8, " --exchange all-gather");
  ASSERT_EQ(eight.rc, 0) << eight.err;
  ASSERT_EQ(gathered.rc, 0) << gathered.err;
  // Dream-7B's 28 query heads and 4 key/value heads: the all-gather holds less, auto takes it
  auto dream = run_command(mosaic("info --config " + config("dream-7b") + " --tokens 1048576 --gpus 4"));
  ASSERT_EQ(dream.rc, 0) << dream.err;
  EXPECT_NE(dream.out.find("all-gather: each layer gathers"), std::string::npos) << dream.out;
  EXPECT_NE(eight.out.find("gpus        8: each runs 131072 rows at most"), std::string::npos) << eight.out;
  EXPECT_NE(eight.out.find("all-to-all: each layer attends over all 1048576 rows of its 4 of 32 heads"),
            std::string::npos) << eight.out;
  EXPECT_NE(gathered.out.find("all-gather: each layer gathers every GPU's keys and values"), std::string::npos)
      << gathered.out;
  EXPECT_NE(eight.out.find("fits        yes"), std::string::npos) << eight.out;
  auto longest = [](const std::string& out) {
    const size_t at = out.find("fits with M=32");
    return std::stoll(out.substr(out.find(": ", at) + 2));
  };
  // Every GPU holds a whole layer's keys and values with the all-gather, an eighth of the heads'
  // queries, keys, values and outputs with the all-to-all.
  EXPECT_GT(longest(gathered.out), longest(one.out));
  EXPECT_GT(longest(eight.out), 2 * longest(gathered.out));
}

TEST(CliGpus, WhatAShardedStepCannotRunIsRefusedByFlag) {
  struct Case {
    std::string args, message;
  };
  const std::string m = " --backend cpu --model " + fixture("llada_tiny");
  for (const Case& c : std::vector<Case>{
           {"generate" + m + " --gpus 2 --cache dual", "--gpus 2 shards whole steps and runs without a cache"},
           {"generate" + m + " --gpus 0", "--gpus: Value 0 not in range"},
           {"generate" + m + " --gpus 3 --prompt-tokens 1 --gen-length 1 --steps 1 --block-length 1",
            "2 tokens cannot be sharded across 3 ranks"},
           {"bench" + m + " --gpus 2 --max-tokens", "--gpus 2 times whole sharded steps"},
           {"bench" + m + " --gpus 2 --cache dual", "--gpus 2 times whole sharded steps"},
           {"info" + m + " --gpus 2 --cache dual", "--gpus 2 plans a sharded step"},
           {"generate" + m + " --gpus 2 --devices 0,1,2", "--gpus 2 and --devices 0,1,2 (3 devices) disagree"},
           {"generate" + m + " --devices 0,x", "--devices: 'x' is not a device number"},
           {"generate" + m + " --gpus 1 --devices 0,1", "--gpus 1 and --devices 0,1 (2 devices) disagree"},
           {"bench" + m + " --devices 0,0 --cache dual", "--gpus 2 times whole sharded steps"},
           {"info" + m + " --gpus 4 --tokens 3 --masked 2", "--tokens 3 cannot be sharded across --gpus 4"},
           {"generate" + m + " --gpus 3 --exchange all-to-all",
            "--exchange all-to-all on 3 GPUs: " + fixture("llada_tiny") + "'s 4 query heads and 2 key/value heads do "
            "not split into 3 groups"},
           {"generate" + m + " --exchange all-gather", "--exchange all-gather picks how the ranks of --gpus N"},
           {"bench" + m + " --gpus 2 --exchange ring", "--exchange: ring not in {auto,all-gather,all-to-all}"},
           {"info --config " + config("llada-8b") + " --gpus 3 --exchange all-to-all",
            "--exchange all-to-all on --gpus 3: " + config("llada-8b") + "'s 32 query heads"},
           {"info" + m + " --exchange all-to-all", "--exchange all-to-all plans how the GPUs of --gpus N"},
       }) {
    auto r = run_command(mosaic(c.args));
    EXPECT_NE(r.rc, 0) << c.args;
    EXPECT_NE((r.err + r.out).find(c.message), std::string::npos) << c.args << "\n" << r.err << r.out;
  }
}

}  // namespace
}  // namespace mosaic
