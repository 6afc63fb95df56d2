// A step whose rows are sharded across ranks (Model::set_shards, issue 17), with CPU backends as
// the ranks: every family's logits equal one device's, sampled steps commit the same tokens in
// the same order, every golden generation keeps its tokens, and what a sharded step cannot run
// is refused by name.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <numeric>

#include "backend/backend.h"
#include "core/error.h"
#include "decode/dream_sampler.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "golden_case.h"
#include "reference_tensors.h"
#include "models/model.h"
#include "sharded_models.h"
#include "step_request.h"
#include "test_util.h"

namespace mosaic {
namespace {

using nlohmann::json;
using test::rel_error;

template <class Fn>
void expect_error_contains(Fn fn, const std::string& want) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << want << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

std::string fixture(const std::string& name) { return (test::fixtures_dir() / name).string(); }
json goldens(const std::string& name) {
  return json::parse(test::read_file(test::fixtures_dir() / name / "goldens.json"));
}

std::vector<int32_t> some_tokens(const Model& m, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % m.config().vocab_size);
  return t;
}

// Every position's logits, the head positions out of order and spread over every rank.
TEST(ShardedStep, LogitsEqualOneDevicesForEveryFamily) {
  for (const char* name : {"llada_tiny", "llada_tiny_fused", "dream_tiny", "llada2_tiny", "llada_moe_tiny"}) {
    SCOPED_TRACE(name);
    auto be = make_cpu_backend();
    Model one(fixture(name), *be);
    const std::vector<int32_t> tokens = some_tokens(one, 37);
    std::vector<int32_t> pos(tokens.size());
    std::iota(pos.begin(), pos.end(), 0);
    std::reverse(pos.begin(), pos.end());
    // Every position a head row; then a few (the masked last layer leaves the other ranks no
    // head row), one at rank 1's first position (a shifted family reads it on rank 0).
    StepRequest all = test::logits_request(tokens, pos), few = test::logits_request(tokens, {36, 19, 35});
    for (StepRequest* r : {&all, &few})
      if (std::string(name) == "llada2_tiny") r->attention_block = 8;  // block-causal, as its sampler runs
    const std::vector<float> want_all = one.step(all).logits, want_few = one.step(few).logits;
    // The all-to-all splits the fixtures' 4 query heads (2 or 4 key/value heads) over 1, 2 or 4.
    const std::vector<std::pair<parallel::Exchange, int>> runs = {
        {parallel::Exchange::AllGather, 1}, {parallel::Exchange::AllGather, 2}, {parallel::Exchange::AllGather, 3},
        {parallel::Exchange::AllGather, 5}, {parallel::Exchange::AllToAll, 1},  {parallel::Exchange::AllToAll, 2},
        {parallel::Exchange::AllToAll, 4}};
    for (const auto& [exchange, ranks] : runs) {
      SCOPED_TRACE(fmt::format("{} ranks, {}", ranks, parallel::exchange_name(exchange)));
      auto sharded = test::sharded_cpu_model(fixture(name), ranks, exchange);
      ASSERT_EQ(sharded->model().exchange(), exchange);
      const std::vector<float> got = sharded->model().step(all).logits;
      ASSERT_EQ(got.size(), want_all.size());
      EXPECT_LT(rel_error(got, want_all), 1e-5);
      const std::vector<float> got_few = sharded->model().step(few).logits;
      ASSERT_EQ(got_few.size(), want_few.size());
      EXPECT_LT(rel_error(got_few, want_few), 1e-5);
    }
  }
}

// A sampled step: the tokens, confidences and commit order of one device's step.
TEST(ShardedStep, SampledStepsEqualOneDevices) {
  auto be = make_cpu_backend();
  Model one(fixture("llada_tiny"), *be);
  auto sharded = test::sharded_cpu_model(fixture("llada_tiny"), 3);
  const std::vector<int32_t> tokens = some_tokens(one, 40);
  const std::vector<int32_t> pos = {39, 2, 17, 30, 5, 26, 13, 0, 38};
  for (double temperature : {0.0, 0.7}) {
    SampleParams sp;
    sp.temperature = temperature;
    sp.seed = 11;
    const StepOutputs want = one.step(test::sample_request(tokens, pos, sp));
    const StepOutputs got = sharded->model().step(test::sample_request(tokens, pos, sp));
    EXPECT_EQ(got.token, want.token);
    EXPECT_EQ(got.order, want.order);
    ASSERT_EQ(got.conf.size(), want.conf.size());
    for (size_t i = 0; i < got.conf.size(); ++i) EXPECT_NEAR(got.conf[i], want.conf[i], 1e-5) << i;
  }
}

// Every golden case of a fixture, generated on `ranks` CPU ranks, keeps its tokens.
template <class Generate>
void expect_goldens(const std::string& name, int ranks, parallel::Exchange exchange, size_t min_cases,
                    Generate generate) {
  SCOPED_TRACE(fmt::format("{} on {} ranks, {}", name, ranks, parallel::exchange_name(exchange)));
  auto sharded = test::sharded_cpu_model(fixture(name), ranks, exchange);
  const json g = goldens(name);
  ASSERT_GE(g["cases"].size(), min_cases);
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    EXPECT_EQ(generate(sharded->model(), c["prompt_tokens"].get<std::vector<int32_t>>(), c).tokens,
              c["output_tokens"].get<std::vector<int32_t>>());
  }
}

TEST(ShardedStep, LladaGoldensHoldOnTwoRanks) {  // guided cases run two trunks, both sharded
  auto llada = [](Model& m, const std::vector<int32_t>& p, const json& c) {
    return llada_generate(m, p, test::golden_options(c));
  };
  for (parallel::Exchange e : {parallel::Exchange::AllGather, parallel::Exchange::AllToAll}) {
    expect_goldens("llada_tiny", 2, e, 8, llada);
    expect_goldens("llada_moe_tiny", 2, e, 4, llada);
  }
}

TEST(ShardedStep, DreamGoldensHoldOnThreeRanksAndOnFour) {
  auto dream = [](Model& m, const std::vector<int32_t>& p, const json& c) {
    return dream_generate(m, p, test::dream_golden_options(c));
  };
  expect_goldens("dream_tiny", 3, parallel::Exchange::AllGather, 15, dream);
  expect_goldens("dream_tiny", 4, parallel::Exchange::AllToAll, 15, dream);  // one key/value head for two ranks
}

TEST(ShardedStep, Llada2GoldensHoldOnTwoRanks) {  // block-causal attention over the exchanged heads
  for (parallel::Exchange e : {parallel::Exchange::AllGather, parallel::Exchange::AllToAll})
    expect_goldens("llada2_tiny", 2, e, 15, [](Model& m, const std::vector<int32_t>& p, const json& c) {
      return llada2_generate(m, p, test::llada2_golden_options(c));
    });
}

// Auto takes the exchange that holds less per rank: the all-to-all only where the query heads
// are many against the key/value heads' whole; asked for where the heads do not split, the
// all-to-all is refused with the counts.
TEST(ShardedStep, PicksTheSmallerExchange) {
  auto picked = [](const char* name, int ranks) { return test::sharded_cpu_model(fixture(name), ranks)->model().exchange(); };
  EXPECT_EQ(picked("llada_moe_tiny", 4), parallel::Exchange::AllToAll);  // 4/4 heads: 2*1 + 2*1 < 2*4 per row
  EXPECT_EQ(picked("llada_moe_tiny", 2), parallel::Exchange::AllGather);  // 2*2 + 2*2: a tie
  EXPECT_EQ(picked("llada_tiny", 2), parallel::Exchange::AllGather);      // 4/2 heads: 2*2 + 2*1 > 2*2
  EXPECT_EQ(picked("llada_tiny", 3), parallel::Exchange::AllGather);      // 4 heads do not split 3 ways
  expect_error_contains([&] { test::sharded_cpu_model(fixture("llada_tiny"), 3, parallel::Exchange::AllToAll); },
                        "4 query heads must divide by 3");
}

// Several query heads per rank reading one key/value head that several ranks share (multi-query
// attention on 2 ranks: LLaDA2-flash's layout on 8 GPUs), and one query head each on 4.
TEST(ShardedStep, RanksShareAKeyValueHead) {
  const auto dir = test::scratch_dir("sharded_one_kv_head");
  test::run_python("tests/models/one_kv_head_fixture.py", "\"" + fixture("llada_tiny") + "\" \"" + dir.string() + "\"");
  auto be = make_cpu_backend();
  Model one(dir.string(), *be);
  ASSERT_EQ(one.config().n_kv_heads, 1);
  const std::vector<int32_t> tokens = some_tokens(one, 29);
  std::vector<int32_t> pos(tokens.size());
  std::iota(pos.begin(), pos.end(), 0);
  const StepRequest all = test::logits_request(tokens, pos), few = test::logits_request(tokens, {28, 3, 15});
  const std::vector<float> want_all = one.step(all).logits, want_few = one.step(few).logits;
  for (const auto& [exchange, ranks] : std::vector<std::pair<parallel::Exchange, int>>{
           {parallel::Exchange::AllToAll, 2}, {parallel::Exchange::AllToAll, 4}, {parallel::Exchange::AllGather, 3}}) {
    SCOPED_TRACE(fmt::format("{} ranks, {}", ranks, parallel::exchange_name(exchange)));
    auto sharded = test::sharded_cpu_model(dir.string(), ranks, exchange);
    EXPECT_LT(rel_error(sharded->model().step(all).logits, want_all), 1e-5);
    EXPECT_LT(rel_error(sharded->model().step(few).logits, want_few), 1e-5);
  }
}

// The plan of a sharded step is one rank's: fewer rows than the whole step's, every key.
TEST(ShardedStep, EachRankPlansItsShard) {
  for (parallel::Exchange e : {parallel::Exchange::AllGather, parallel::Exchange::AllToAll}) {
    SCOPED_TRACE(parallel::exchange_name(e));
    auto be = make_cpu_backend();
    Model one(fixture("llada_tiny"), *be);
    auto sharded = test::sharded_cpu_model(fixture("llada_tiny"), 4, e);
    const std::vector<int32_t> tokens = some_tokens(one, 64);
    const StepRequest r = test::sample_request(tokens, {60, 61, 62, 63});
    const Dims d = sharded->model().dims(r);
    EXPECT_EQ(d.L, 16);
    EXPECT_EQ(d.M, 4);
    EXPECT_EQ(d.K, 64);
    EXPECT_LT(sharded->model().plan(d, r).arena_bytes(), one.plan(one.dims(r), r).arena_bytes());
    // generate's up-front check plans the same shard: the longest, with as many head rows as it holds
    const GenerationPlan gp = sharded->model().check_generation({}, GenerationShape{64, 8, 8}, false);
    ASSERT_EQ(gp.steps.size(), 1u);
    EXPECT_EQ(gp.steps[0].dims, (Dims{16, 8, 64, 0}));
    EXPECT_EQ(sharded->model().check_generation({}, GenerationShape{66, 32, 32}, false).steps[0].dims,
              (Dims{17, 17, 66, 0}));
  }
}

TEST(ShardedStep, RefusesWhatItCannotRunByName) {
  auto sharded = test::sharded_cpu_model(fixture("llada_tiny"), 3);
  Model& m = sharded->model();
  const std::vector<int32_t> two = some_tokens(m, 2);
  expect_error_contains([&] { m.step(test::sample_request(two, {1})); }, "cannot be sharded across 3 ranks");
  const std::vector<int32_t> tokens = some_tokens(m, 32);
  StepRequest cached = test::sample_request(tokens, {30});
  cached.cache.options.mode = CacheMode::Dual;
  cached.cache.step = CacheStep::Store;
  cached.cache.block_begin = 24, cached.cache.block_end = 32;
  expect_error_contains([&] { m.step(cached); }, "runs without a cache");
  const StepRequest plain = test::sample_request(tokens, {30});
  expect_error_contains([&] { m.step_batch({{&plain, 1}}); }, "one sequence at a time");
  expect_error_contains([&] { m.check_generation({CacheMode::Dual}, {32, 8, 8}, false); }, "without a cache");
  // a group that does not match its peers
  auto be = make_cpu_backend();
  Model other(fixture("llada_tiny"), *be);
  parallel::LocalGroup group(3);
  expect_error_contains([&] { other.set_shards({}, {&group.rank(0)}); }, "rank 0 of a group of 1");
  auto be2 = make_cpu_backend();
  Model dream(fixture("dream_tiny"), *be2);
  parallel::LocalGroup two_ranks(2);
  expect_error_contains([&] { other.set_shards({&dream}, {&two_ranks.rank(0), &two_ranks.rank(1)}); },
                              "the same model");
  auto be3 = make_cpu_backend();
  Model peer(fixture("llada_tiny"), *be3);
  expect_error_contains([&] { other.set_shards({&peer, &peer}, {&group.rank(0), &group.rank(1), &group.rank(2)}); },
                        "peer 2 is given twice");
}

// A rank that fails mid-step (here its third exchange) fails the step on every rank: the others,
// already waiting in that exchange, return instead of hanging.
class FailingRank : public parallel::Communicator {
 public:
  explicit FailingRank(parallel::Communicator& c) : c_(c) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  void all_to_all(const std::vector<const void*>& s, const std::vector<size_t>& sb, const std::vector<void*>& r,
                  const std::vector<size_t>& rb) override {
    if (++calls_ == 3) MOSAIC_FAIL("rank {} lost its device", rank());
    c_.all_to_all(s, sb, r, rb);
  }
  void abort() override { c_.abort(); }

 private:
  parallel::Communicator& c_;
  std::atomic<int> calls_{0};
};

TEST(ShardedStep, ARankThatFailsStopsEveryRank) {
  for (parallel::Exchange e : {parallel::Exchange::AllGather, parallel::Exchange::AllToAll}) {
    SCOPED_TRACE(parallel::exchange_name(e));
    auto be0 = make_cpu_backend(), be1 = make_cpu_backend();
    Model m0(fixture("llada_tiny"), *be0), m1(fixture("llada_tiny"), *be1);
    parallel::LocalGroup group(2);
    FailingRank failing(group.rank(1));
    m0.set_shards({&m1}, {&group.rank(0), &failing}, e);
    const std::vector<int32_t> tokens = some_tokens(m0, 20);
    expect_error_contains([&] { m0.step(test::sample_request(tokens, {19})); }, "rank 1 lost its device");
    // the group is gone: the next step says so instead of waiting
    EXPECT_TRUE(m0.ranks_aborted());
    expect_error_contains([&] { m0.step(test::sample_request(tokens, {19})); }, "communicators were aborted");
  }
}

}  // namespace
}  // namespace mosaic
