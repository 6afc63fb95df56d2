#pragma once
// The engine loop: one sequence, one sampler, steps until the sequence is finished.
#include <cstdint>
#include <functional>
#include <vector>

#include "decode/sampler.h"
#include "decode/sequence.h"
#include "models/model.h"

namespace mosaic {

struct StepEvent {
  int64_t block = 0, num_blocks = 0;
  int64_t step = 0, steps_per_block = 0;  // within the block
  int64_t global_step = 0;
  int64_t committed = 0;  // tokens committed by this step
  bool ran_model = false;
  bool block_done = false;  // this step finished its block
  CacheStep cache_step = CacheStep::Full;
  StepStats stats;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // the whole sequence: prompt then generated
  int64_t prompt_length = 0;
  std::vector<StepEvent> steps;
  double total_ms = 0;
};

using StepCallback = std::function<void(const StepEvent&, const std::vector<int32_t>& tokens)>;

// One step of an unfinished sequence: prepare, run the model (unless no row needs it), commit,
// advance. A server interleaves sequences with it at block boundaries.
StepEvent run_step(Model& model, Sampler& sampler, Sequence& seq);

// One sequence of a batched step: its sampler, its state, and an id naming its caches.
struct BatchMember {
  Sampler* sampler = nullptr;
  Sequence* sequence = nullptr;
  int64_t id = 0;
};
// One step of several unfinished sequences: each prepares and commits as run_step does, and
// those whose steps need the model share one pass per kind of step (Model::step_batch).
// Returns their events, in order; each ran sequence's stats are its pass's.
std::vector<StepEvent> run_batch_step(Model& model, const std::vector<BatchMember>& batch);

// One round of a batch: the unfinished members step together until each has finished its
// block (one whose block ends early waits for the others); every member starts its block,
// so the round's first step stores the batch's caches. on_pass sees each pass's members and
// their events.
using BatchCallback = std::function<void(const std::vector<BatchMember>&, const std::vector<StepEvent>&)>;
void run_batch_block(Model& model, const std::vector<BatchMember>& members, const BatchCallback& on_pass = {});

GenerateResult run_generation(Model& model, Sampler& sampler, Sequence& seq, const StepCallback& on_step = {});

}  // namespace mosaic
