// The scheduler on the shipped model (CPU): generations run in rounds of a block, several
// sequences in one pass, and end with the tokens each has alone (greedy and sampled, with and
// without a cache); a cancelled one stops; a full queue answers 429, a generation past the
// memory budget 400 naming what fits, a draining server 503.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "decode/engine.h"
#include "io/tokenizer.h"
#include "models/model.h"
#include "serve/completion_request.h"
#include "serve/generation_setup.h"
#include "serve/scheduler.h"
#include "test_util.h"

namespace mosaic::serve {
namespace {

std::filesystem::path shipped() { return test::source_dir() / "models" / "mosaic-tiny"; }

CompletionRequest request(const std::string& prompt, int64_t max_tokens, const std::string& cache = "") {
  CompletionRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.cache = cache;
  return r;
}

std::vector<int32_t> wait_tokens(GenerationJob& job) {
  for (JobEvent ev;;) {
    if (!job.next(ev, std::chrono::milliseconds(100))) continue;
    if (ev.kind == JobEvent::Kind::Done) break;
    EXPECT_NE(ev.kind, JobEvent::Kind::Error) << ev.error.dump();
    if (ev.kind == JobEvent::Kind::Error) break;
  }
  return job.generation().sequence.tokens;
}

TEST(Scheduler, BatchedGenerationsKeepEachGenerationsTokens) {
  auto be = make_cpu_backend();
  Model m(shipped().string(), *be);
  const io::Tokenizer tok = io::Tokenizer::load((shipped() / "tokenizer.json").string());
  std::vector<CompletionRequest> reqs = {request("Once upon a time", 64),      request("And the LORD", 32, "dual"),
                                         request("In the beginning", 64, "prefix"), request("Blessed are", 48),
                                         request("The kingdom of", 40, "dual"),     request("Then said", 24),
                                         request("And it came to pass", 56, "dual")};
  reqs[3].temperature = 0.8;  // sampled: its noise is its own in a batch too
  reqs[3].seed = 7;
  reqs[6].steps = 28;  // another schedule: its blocks take 4 steps, the others 8 or 1
  reqs[6].block_length = 8;
  std::vector<std::vector<int32_t>> alone;
  for (const CompletionRequest& r : reqs) {
    PreparedGeneration g = prepare_generation(m, tok, r, {});
    run_generation(m, *g.sampler, g.sequence);
    alone.push_back(g.sequence.tokens);
  }
  Metrics metrics;
  Scheduler s(m, metrics, {.max_batch = 6, .queue = 4});
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (const CompletionRequest& r : reqs)
    jobs.push_back(s.submit(std::make_shared<GenerationJob>(prepare_generation(m, tok, r, {}), tok)));
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(wait_tokens(*jobs[i]), alone[i]) << i;
  const std::string text = metrics.render();
  EXPECT_NE(text.find("mosaic_generated_tokens_total"), std::string::npos);
  // Passes ran several sequences: the batch-size histogram has counts above 1.
  const size_t at = text.find("mosaic_step_batch_size_bucket{le=\"1\"}");
  const size_t count_at = text.find("mosaic_step_batch_size_count");
  ASSERT_NE(at, std::string::npos) << text;
  ASSERT_NE(count_at, std::string::npos) << text;
  const double ones = std::stod(text.substr(text.find(' ', at) + 1));
  const double all = std::stod(text.substr(text.find(' ', count_at) + 1));
  EXPECT_LT(ones, all) << text;
}

TEST(Scheduler, CancelQueueBudgetAndDrain) {
  auto be = make_cpu_backend();
  Model m(shipped().string(), *be);
  const io::Tokenizer tok = io::Tokenizer::load((shipped() / "tokenizer.json").string());
  Metrics metrics;
  auto job = [&](int64_t n) { return std::make_shared<GenerationJob>(prepare_generation(m, tok, request("Once", n), {}), tok); };
  {
    Scheduler s(m, metrics, {.max_batch = 1, .queue = 0});
    auto long_job = s.submit(job(1024));
    try {
      s.submit(job(8));
      ADD_FAILURE() << "a second generation found room";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 429);
    }
    long_job->cancel();
    s.drain();  // returns once the cancelled generation left
    EXPECT_LT(long_job->generation().sequence.global_step, 1024) << "the cancelled generation ran to its end";
    try {
      s.submit(job(8));
      ADD_FAILURE() << "a draining server took a generation";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 503);
    }
  }
  m.set_activation_budget(size_t{16} << 20);
  Scheduler s(m, metrics, {});
  try {
    s.submit(job(1 << 20));
    ADD_FAILURE() << "a generation past the budget was admitted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "max_tokens");
    EXPECT_NE(std::string(e.what()).find("fits is"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mosaic::serve
