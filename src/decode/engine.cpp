#include "decode/engine.h"

#include <chrono>

namespace mosaic {

StepEvent run_step(Model& model, Sampler& sampler, Sequence& seq) {
  StepEvent ev{seq.block, sampler.num_blocks(), seq.step, sampler.steps_per_block(), seq.global_step};
  StepRequest r;
  r.tokens = &seq.tokens;
  r.step_in_block = static_cast<int>(seq.step);
  sampler.prepare(seq, r);
  StepOutputs out;
  if (!r.head_pos.empty()) {
    out = model.step(r, &ev.stats);
    ev.ran_model = true;
  }
  ev.committed = sampler.commit(seq, r, out);
  ev.cache_step = r.cache.step;
  ev.block_done = sampler.block_done(seq);
  if (ev.block_done)
    seq.next_block(sampler.num_blocks());
  else
    seq.next_step();
  return ev;
}

GenerateResult run_generation(Model& model, Sampler& sampler, Sequence& seq, const StepCallback& on_step) {
  GenerateResult res;
  res.prompt_length = seq.prompt_length;
  const auto t_start = std::chrono::steady_clock::now();
  while (!seq.finished) {
    const StepEvent ev = run_step(model, sampler, seq);
    res.steps.push_back(ev);
    if (on_step) on_step(ev, seq.tokens);
  }
  res.tokens = seq.tokens;
  res.total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count();
  return res;
}

}  // namespace mosaic
