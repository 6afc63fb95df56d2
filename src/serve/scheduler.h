#pragma once
// The scheduler owns the model's thread. Requests wait in a bounded queue; up to `max_batch`
// generations are active at once and take turns block by block (a generation joins and
// leaves at a block boundary; a block's first step stores its caches afresh, so turns need no
// copies). A generation whose cache outlives its blocks (LLaDA2.0's prefix cache) keeps its
// turn to the end. Each step runs one sequence: the batched step (every active sequence's rows
// in one pass) is not built yet.
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
  void run_turn(GenerationJob& job);
  void publish_gauges();

  Model& model_;
  Metrics& metrics_;
  SchedulerOptions o_;
  std::mutex model_mu_;  // the model (its plans, arena, caches) is used by one thread at a time
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  std::vector<std::shared_ptr<GenerationJob>> active_;
  size_t next_ = 0;  // round-robin position in active_
  size_t cache_bytes_ = 0;  // the planned caches of the generation whose turn it is
  int64_t next_id_ = 1;
  bool draining_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace mosaic::serve
