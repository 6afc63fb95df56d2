#include "decode/engine.h"

#include <chrono>
#include <map>

namespace mosaic {

namespace {

// A prepared step's end: the sampler commits what the model returned, the sequence advances.
void finish_step(Sampler& sampler, Sequence& seq, const StepRequest& r, const StepOutputs& out, StepEvent& ev) {
  ev.committed = sampler.commit(seq, r, out);
  ev.cache_step = r.cache.step;
  ev.block_done = sampler.block_done(seq);
  if (ev.block_done)
    seq.next_block(sampler.num_blocks());
  else
    seq.next_step();
}

}  // namespace

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
  finish_step(sampler, seq, r, out, ev);
  return ev;
}

std::vector<StepEvent> run_batch_step(Model& model, const std::vector<BatchMember>& batch) {
  std::vector<StepEvent> events(batch.size());
  std::vector<StepRequest> requests(batch.size());
  // The members whose step needs the model, grouped by the kind of step (one graph each).
  std::map<GraphOptions, std::vector<size_t>> kinds;
  for (size_t i = 0; i < batch.size(); ++i) {
    Sampler& sampler = *batch[i].sampler;
    Sequence& seq = *batch[i].sequence;
    events[i] = StepEvent{seq.block, sampler.num_blocks(), seq.step, sampler.steps_per_block(), seq.global_step};
    StepRequest& r = requests[i];
    r.tokens = &seq.tokens;
    r.step_in_block = static_cast<int>(seq.step);
    sampler.prepare(seq, r);
    if (!r.head_pos.empty()) kinds[model.graph_options(r)].push_back(i);
  }
  std::vector<StepOutputs> outs(batch.size());
  for (const auto& [options, members] : kinds) {
    std::vector<BatchEntry> entries;
    for (size_t i : members) entries.push_back({&requests[i], batch[i].id});
    StepStats stats;
    std::vector<StepOutputs> o = model.step_batch(entries, &stats);
    for (size_t j = 0; j < members.size(); ++j) {
      outs[members[j]] = std::move(o[j]);
      events[members[j]].stats = stats;
      events[members[j]].ran_model = true;
    }
  }
  for (size_t i = 0; i < batch.size(); ++i)
    finish_step(*batch[i].sampler, *batch[i].sequence, requests[i], outs[i], events[i]);
  return events;
}

void run_batch_block(Model& model, const std::vector<BatchMember>& members, const BatchCallback& on_pass) {
  std::vector<BatchMember> in_block;
  for (const BatchMember& b : members)
    if (!b.sequence->finished) in_block.push_back(b);
  while (!in_block.empty()) {
    const std::vector<StepEvent> events = run_batch_step(model, in_block);
    if (on_pass) on_pass(in_block, events);
    std::vector<BatchMember> next;
    for (size_t i = 0; i < in_block.size(); ++i)
      if (!events[i].block_done) next.push_back(in_block[i]);
    in_block = std::move(next);
  }
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
