#pragma once
// Generations for the batch tests (CPU and GPU): a family's sampler and sequence with options
// varied per index (prompt and gen lengths, schedules, threshold, noise, guidance), and the
// server's rounds (every unfinished generation joins; a round ends when every member has
// finished its block).
#include <memory>
#include <string>
#include <vector>

#include "decode/dream_sampler.h"
#include "decode/engine.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "models/model.h"

namespace mosaic::test {

inline std::vector<int32_t> prompt_of(int64_t n, int salt) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 37 + 11 + salt * 13) % 300);
  return p;
}

// One generation: its sampler and sequence.
struct Job {
  std::unique_ptr<Sampler> sampler;
  Sequence seq;
};

// A generation's options varied by `i`: prompt and gen lengths, seeds, temperature.
inline Job make_job(const Model& m, int i, CacheMode cache, bool guided) {
  const auto prompt = prompt_of(7 + 5 * i, i);
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  Job j;
  const std::string family = m.family().name();
  if (family == "llada2") {
    Llada2Options o;
    o.gen_length = 12 + 4 * i;
    o.block_length = 8;
    o.steps = 4;
    o.threshold = i == 1 ? 0.0 : 0.9;
    o.temperature = i == 2 ? 0.8 : 0.0;
    o.seed = 100 + i;
    o.cache = cache;
    auto s = std::make_unique<Llada2Sampler>(o, static_cast<int64_t>(prompt.size()),
                                             static_cast<int32_t>(*m.config().eos_token_id));
    const int64_t P = static_cast<int64_t>(prompt.size());
    j.seq = Sequence::start(prompt, s->sequence_length(P, o.gen_length) - P, mask, o.seed);
    j.sampler = std::move(s);
  } else if (family == "dream") {
    DreamOptions o;
    o.gen_length = 16;
    o.steps = 8 + 4 * (i % 2);
    o.block_length = 8;
    o.temperature = i == 2 ? 0.7 : 0.0;
    o.seed = 200 + i;
    o.cache.mode = cache;
    j.seq = Sequence::start(prompt, o.gen_length, mask, o.seed);
    j.sampler = std::make_unique<DreamSampler>(o);
  } else {
    GenerateOptions o;
    o.gen_length = 16 + 8 * (i % 2);
    o.block_length = 8;
    o.steps = o.gen_length / 2;
    o.temperature = i == 2 ? 0.9 : 0.0;
    o.cfg_scale = guided ? 1.5f : 0.0f;
    o.seed = 300 + i;
    o.cache.mode = cache;
    if (i == 1) o.threshold = 0.5;
    j.seq = Sequence::start(prompt, o.gen_length, mask, o.seed);
    j.sampler = std::make_unique<LladaSampler>(o);
  }
  return j;
}

// Runs the jobs in rounds as the server does: every unfinished job joins, and the round ends
// when every member has finished its block.
inline void run_in_rounds(Model& m, std::vector<Job>& jobs) {
  for (;;) {
    std::vector<BatchMember> round;
    for (size_t i = 0; i < jobs.size(); ++i)
      if (!jobs[i].seq.finished) round.push_back({jobs[i].sampler.get(), &jobs[i].seq, static_cast<int64_t>(i)});
    if (round.empty()) return;
    run_batch_block(m, round);
  }
}

struct Case {
  const char* fixture;
  CacheMode cache;
  bool guided;
};

}  // namespace mosaic::test
