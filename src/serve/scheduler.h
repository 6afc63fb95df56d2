#pragma once
// The scheduler owns the model's thread. Requests wait in a bounded queue; up to `max_batch`
// generations are active at once. They run in rounds of one block: every active generation
// whose steps can share a pass with the round's first (the same cache mode and guidance) joins,
// as many as the memory plan holds together, and each step runs all of their rows in one pass
// (Model::step_batch). A generation joins and leaves at a block boundary: a block's first step
// stores the round's caches afresh. A generation whose cache outlives its blocks (LLaDA2.0's
// exact prefix cache) or keeps only some rows (a sparse cache) runs alone, to its end or to
// the end of its block.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "models/model.h"
#include "serve/generation_job.h"
#include "serve/metrics.h"

namespace mosaic::serve {

struct SchedulerOptions {
  int max_batch = 8;   // generations denoised concurrently
  int queue = 64;      // generations waiting beyond those
};

class Scheduler {
 public:
  Scheduler(Model& model, Metrics& metrics, SchedulerOptions o);
  ~Scheduler();

  // Plans the generation alone under the memory budget (ApiError 400 naming the longest
  // sequence that fits when it does not), then queues it: ApiError 429 when the queue is
  // full, 503 while draining.
  std::shared_ptr<GenerationJob> submit(std::shared_ptr<GenerationJob> job);
  // Refuses new generations and returns once every admitted one has finished.
  void drain();
  bool draining() const;

 private:
  void loop();
  // The active generations that share the first one's round (the first is always in).
  std::vector<std::shared_ptr<GenerationJob>> form_round();
  void run_round(const std::vector<std::shared_ptr<GenerationJob>>& round);
  void run_alone(GenerationJob& job);
  void publish_gauges();

  Model& model_;
  Metrics& metrics_;
  SchedulerOptions o_;
  std::mutex model_mu_;  // the model (its plans, arena, caches) is used by one thread at a time
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  std::vector<std::shared_ptr<GenerationJob>> active_;
  size_t cache_bytes_ = 0;  // the planned caches of the round running
  int64_t next_id_ = 1;
  bool draining_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace mosaic::serve
