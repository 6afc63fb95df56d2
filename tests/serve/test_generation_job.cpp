// A job's text as it becomes final: only tokens before the first mask are sent, a character
// split over tokens waits for its last byte, an end-of-text token or a stop string ends it,
// and the usage counts the tokens the answer holds.
#include <gtest/gtest.h>

#include "io/tokenizer.h"
#include "serve/generation_job.h"
#include "test_util.h"

namespace mosaic::serve {
namespace {

io::Tokenizer shipped_tokenizer() {
  return io::Tokenizer::load((test::source_dir() / "models" / "mosaic-tiny" / "tokenizer.json").string());
}

std::vector<JobEvent> drain(GenerationJob& job) {
  std::vector<JobEvent> out;
  for (JobEvent ev; job.next(ev, std::chrono::milliseconds(0));) out.push_back(ev);
  return out;
}

std::string texts(const std::vector<JobEvent>& evs) {
  std::string s;
  for (const JobEvent& e : evs)
    if (e.kind == JobEvent::Kind::Text) s += e.text;
  return s;
}

PreparedGeneration generation(const std::vector<int32_t>& answer, int32_t mask, std::vector<int32_t> end_ids = {},
                              std::vector<std::string> stop = {}) {
  PreparedGeneration g;
  g.prompt = {1};
  g.max_tokens = static_cast<int64_t>(answer.size());
  g.sequence = Sequence::start(g.prompt, g.max_tokens, mask, 0);
  g.end_ids = std::move(end_ids);
  g.stop = std::move(stop);
  return g;
}

TEST(GenerationJob, SendsTheTextBeforeTheFirstMaskOnce) {
  const io::Tokenizer tok = shipped_tokenizer();
  const std::vector<int32_t> answer = tok.encode(" and the LORD spake unto Moses", true);
  ASSERT_GE(answer.size(), 4u);
  const int32_t mask = static_cast<int32_t>(tok.vocab_size());  // not a token: shows as masked
  GenerationJob job(generation(answer, mask), tok);
  Sequence& s = job.generation().sequence;
  s.tokens[1 + 1] = answer[1];  // a later token first: nothing final yet
  EXPECT_FALSE(job.after_step());
  EXPECT_TRUE(drain(job).empty());
  s.tokens[1] = answer[0];
  EXPECT_FALSE(job.after_step());
  std::vector<JobEvent> evs = drain(job);
  EXPECT_EQ(texts(evs), tok.decode({answer[0], answer[1]}, true));
  for (size_t i = 2; i < answer.size(); ++i) s.tokens[1 + i] = answer[i];
  EXPECT_TRUE(job.after_step());
  evs = drain(job);
  ASSERT_EQ(evs.back().kind, JobEvent::Kind::Done);
  EXPECT_EQ(evs.back().finish_reason, "length");
  EXPECT_EQ(evs.back().completion_tokens, static_cast<int64_t>(answer.size()));
  EXPECT_EQ(tok.decode({answer[0], answer[1]}, true) + texts(evs), tok.decode(answer, true));
}

TEST(GenerationJob, AnEndTokenOrAStopStringEndsTheText) {
  const io::Tokenizer tok = shipped_tokenizer();
  std::vector<int32_t> answer = tok.encode(" and the LORD spake unto Moses", true);
  const int32_t mask = static_cast<int32_t>(tok.vocab_size());
  const int32_t end = *tok.eos_id;
  answer.insert(answer.begin() + 3, end);
  GenerationJob job(generation(answer, mask, {end}), tok);
  Sequence& s = job.generation().sequence;
  for (size_t i = 0; i < 4; ++i) s.tokens[1 + i] = answer[i];  // up to the end token; the rest still masked
  EXPECT_TRUE(job.after_step());
  std::vector<JobEvent> evs = drain(job);
  EXPECT_EQ(texts(evs), tok.decode({answer[0], answer[1], answer[2]}, true));
  EXPECT_EQ(evs.back().finish_reason, "stop");
  EXPECT_EQ(evs.back().completion_tokens, 3);

  const std::vector<int32_t> plain = tok.encode(" and the LORD spake unto Moses", true);
  GenerationJob cut(generation(plain, mask, {}, {"LORD"}), tok);
  for (size_t i = 0; i < plain.size(); ++i) cut.generation().sequence.tokens[1 + i] = plain[i];
  EXPECT_TRUE(cut.after_step());
  evs = drain(cut);
  EXPECT_EQ(texts(evs), " and the ");
  EXPECT_EQ(evs.back().finish_reason, "stop");
  // completion_tokens: the fewest tokens whose text covers the kept text.
  EXPECT_GE(tok.decode(std::vector<int32_t>(plain.begin(), plain.begin() + evs.back().completion_tokens), true).size(),
            std::string(" and the ").size());
  EXPECT_LT(tok.decode(std::vector<int32_t>(plain.begin(), plain.begin() + evs.back().completion_tokens - 1), true)
                .size(),
            std::string(" and the ").size());
}

TEST(GenerationJob, APartialStopStringIsHeldBack) {
  const io::Tokenizer tok = shipped_tokenizer();
  const std::vector<int32_t> answer = tok.encode(" and the LORD spake", true);
  const int32_t mask = static_cast<int32_t>(tok.vocab_size());
  GenerationJob job(generation(answer, mask, {}, {" LORD smote"}), tok);
  Sequence& s = job.generation().sequence;
  size_t upto = 0;  // the tokens of " and the LORD"
  while (tok.decode(std::vector<int32_t>(answer.begin(), answer.begin() + upto), true).size() < 13) ++upto;
  for (size_t i = 0; i < upto; ++i) s.tokens[1 + i] = answer[i];
  EXPECT_FALSE(job.after_step());
  EXPECT_EQ(texts(drain(job)), " and the") << "' LORD' may begin the stop string";
  for (size_t i = upto; i < answer.size(); ++i) s.tokens[1 + i] = answer[i];
  EXPECT_TRUE(job.after_step());
  EXPECT_EQ(texts(drain(job)), " LORD spake");
}

}  // namespace
}  // namespace mosaic::serve
