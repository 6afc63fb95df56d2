// generate's expert-offload flags end to end on the simulated device (the CPU backend): the
// offloaded run gives the all-resident run's tokens, reports what it did, and bad flags are
// refused with the flag named.
#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace mosaic {
namespace {

std::string generate(const std::string& flags) {
  return test::mosaic_binary() + " generate --backend cpu -q --model " +
         (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
         " --prompt 'And God said' --gen-length 64 --format json " + flags;
}

TEST(CliOffload, HalfTheExpertsOffloadedGiveTheSameTokens) {
  const auto all = test::run_command(generate(""));
  ASSERT_EQ(all.rc, 0) << all.err;
  const auto want = nlohmann::json::parse(all.out)["output_tokens"];
  for (const char* flags : {"--gpu-experts 32", "--gpu-experts 32 --refresh-interval 3", "--gpu-experts 32 --offload "
                            "static", "--gpu-experts 32 --offload lru", "--gpu-experts 0 --offload cpu"}) {
    const auto r = test::run_command(generate(flags));
    ASSERT_EQ(r.rc, 0) << flags << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["output_tokens"], want) << flags;
    const double hit = j["offload"]["gpu_hit_rate"];
    if (std::string(flags).find("cpu") != std::string::npos)
      EXPECT_EQ(hit, 0.0);
    else
      EXPECT_GT(hit, 0.4) << flags;
  }
}

TEST(CliOffload, MoeStatsAndTheChosenIntervalAreReported) {
  const auto r = test::run_command(test::mosaic_binary() + " generate --backend cpu --model " +
                                   (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
                                   " --gen-length 64 --gpu-experts 32 --moe-stats");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("refresh interval: tau"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GPU hit rate"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("overlap with the previous step"), std::string::npos) << r.err;
}

TEST(CliOffload, BadFlagsAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {"--gpu-experts 65", "--gpu-experts 65 is more than the model's 64"},
      {"--gpu-experts -3", "--gpu-experts must be >= 0"},
      {"--expert-budget 1000", "--expert-budget 1000 B holds less than one expert"},
      {"--gpu-experts 8 --refresh-interval 0", "--refresh-interval must be auto or a number of steps > 0"},
      {"--gpu-experts 8 --offload fifo", "--offload must be tide, tide-lagged, static, lru or cpu"},
      {"--gpu-experts 8 --offload cpu", "--offload cpu runs every routed expert on the CPU"},
      {"--offload lru", "--offload lru needs --gpu-experts N or --expert-budget BYTES"},
      {"--gpu-experts 8 --expert-budget 1GiB", "not both"},
  };
  for (const auto& [flags, message] : cases) {
    const auto r = test::run_command(generate(flags));
    EXPECT_NE(r.rc, 0) << flags;
    EXPECT_NE(r.err.find(message), std::string::npos) << flags << ": " << r.err;
  }
  const auto dense = test::run_command(test::mosaic_binary() + " generate --backend cpu -q --gen-length 8 "
                                       "--gpu-experts 2");
  EXPECT_NE(dense.rc, 0);
  EXPECT_NE(dense.err.find("has no routed experts"), std::string::npos) << dense.err;
}

TEST(CliOffload, BenchRunsEveryPlacementOnTheSameWeights) {
  const auto r = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                   (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
                                   " --offload gpu,tide,tide-lagged,static,lru,cpu --gpu-experts 32 --tokens 96 --gen-length 32 "
                                   "--warmup-generations 0 --refresh-interval 2");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* policy : {" gpu ", " tide ", " tide-lagged ", " static ", " lru ", " cpu "})
    EXPECT_NE(r.out.find(policy), std::string::npos) << policy << "\n" << r.out;
  EXPECT_NE(r.out.find("tide / best baseline"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tide-lagged / best baseline"), std::string::npos) << r.out;
  // Every placement gives the all-GPU run's tokens (agreement 1.000 on each row).
  int agree = 0;
  for (size_t at = r.out.find("1.000\n"); at != std::string::npos; at = r.out.find("1.000\n", at + 1)) ++agree;
  EXPECT_EQ(agree, 6) << r.out;
  const auto missing = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                         (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
                                         " --offload tide --tokens 96 --gen-length 32");
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("needs --gpu-experts"), std::string::npos) << missing.err;
  const auto unknown = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                         (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
                                         " --offload gpu,fifo --gpu-experts 32 --tokens 96 --gen-length 32");
  EXPECT_NE(unknown.rc, 0);
  EXPECT_NE(unknown.err.find("--offload must be tide, tide-lagged, static, lru or cpu (got 'fifo') (or gpu"),
            std::string::npos)
      << unknown.err;
}

// --routing-from: the fixture's recorded routing (16 experts, top 4) replayed into the shipped
// model (64 experts, top 4) in every run: the runs still agree with the all-GPU one (the offload
// never changes routing, replayed or not), and the routing statistics are the replay's.
TEST(CliOffload, BenchReplaysAnotherModelsRouting) {
  const std::string base = test::mosaic_binary() + " bench --backend cpu --model " +
                           (test::source_dir() / "models" / "mosaic-moe-tiny").string() +
                           " --offload gpu,tide-lagged --gpu-experts 32 --tokens 96 --gen-length 32 "
                           "--warmup-generations 0 --refresh-interval 2 --cache prefix";
  const auto r = test::run_command(base + " --routing-from " + (test::fixtures_dir() / "llada2_tiny").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("recorded 32 steps"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("into 7 MoE layers of 64 experts top 4"), std::string::npos) << r.err;
  int agree = 0;
  for (size_t at = r.out.find("1.000\n"); at != std::string::npos; at = r.out.find("1.000\n", at + 1)) ++agree;
  EXPECT_EQ(agree, 2) << r.out;
  const auto own = test::run_command(base);
  ASSERT_EQ(own.rc, 0) << own.err;
  // The routing columns (hit rate, copies, CPU pairs, overlap) differ: the replayed routing is not
  // the model's own.
  auto routing = [](const std::string& out) {
    std::istringstream row(out.substr(out.find(" tide-lagged ")));
    std::string f[10];
    for (std::string& x : f) row >> x;  // policy slots tau total tokens/s hit copies cpu-pairs overlap agree
    return f[5] + " " + f[6] + " " + f[7] + " " + f[8];
  };
  EXPECT_NE(routing(r.out), routing(own.out)) << r.out << own.out;
  const auto bad = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                     (test::fixtures_dir() / "llada2_tiny").string() +
                                     " --offload gpu,tide --gpu-experts 8 --tokens 64 --gen-length 32 "
                                     "--warmup-generations 0 --routing-from " +
                                     (test::source_dir() / "models" / "mosaic-moe-tiny").string());
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("cannot be spread over 16 experts"), std::string::npos) << bad.err;
  const auto alone = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                       (test::fixtures_dir() / "llada2_tiny").string() + " --tokens 64 --routing-from " +
                                       (test::source_dir() / "models" / "mosaic-moe-tiny").string());
  EXPECT_NE(alone.rc, 0);
  EXPECT_NE(alone.err.find("--routing-from replays routing into --offload"), std::string::npos) << alone.err;
}

// Without the all-GPU run, --layers K loads only K layers (how LLaDA2.0-flash, larger than the
// host, is measured in part).
TEST(CliOffload, BenchOfTheFirstLayersLoadsOnlyThose) {
  const auto r = test::run_command(test::mosaic_binary() + " bench --backend cpu --model " +
                                   (test::fixtures_dir() / "llada2_tiny").string() +
                                   " --offload tide,cpu --gpu-experts 8 --layers 2 --tokens 64 --gen-length 32 "
                                   "--warmup-generations 0");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find(" tide "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" cpu "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("expert offload tide"), std::string::npos) << r.err;
}

TEST(CliOffload, InfoPlansTheFlashModelOnAn80GbGpuAndA256GbHost) {
  const std::string info = test::mosaic_binary() + " info --config " +
                           (test::source_dir() / "configs" / "llada2-flash" / "config.json").string();
  const auto r = test::run_command(info + " --gpu-experts 64 --memory-budget 80GB --host-memory 256GB");
  ASSERT_EQ(r.rc, 0) << r.err;
  // 31 MoE layers x 256 experts x 24 MiB (3 x 4096 x 1024 bf16) = 186 GiB on the host.
  EXPECT_NE(r.out.find("in pinned host memory 186.00 GiB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("186.00 GiB of 238.42 GiB: fits"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpu experts at most"), std::string::npos) << r.out;
  const auto small_host = test::run_command(info + " --gpu-experts 64 --memory-budget 80GB --host-memory 128GB");
  EXPECT_EQ(small_host.rc, 3) << small_host.out;
  EXPECT_NE(small_host.out.find("does NOT fit"), std::string::npos) << small_host.out;
  const auto too_many = test::run_command(info + " --gpu-experts 257");
  EXPECT_NE(too_many.rc, 0);
  EXPECT_NE(too_many.err.find("--gpu-experts 257 is more than"), std::string::npos) << too_many.err;
}

}  // namespace
}  // namespace mosaic
