#include "serve/scheduler.h"

#include <fmt/format.h>

#include "core/error.h"
#include "decode/engine.h"

namespace mosaic::serve {

Scheduler::Scheduler(Model& model, Metrics& metrics, SchedulerOptions o) : model_(model), metrics_(metrics), o_(o) {
  MOSAIC_CHECK(o_.max_batch >= 1, "--max-batch must be at least 1 (got {})", o_.max_batch);
  MOSAIC_CHECK(o_.queue >= 0, "--queue must be >= 0 (got {})", o_.queue);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<GenerationJob> Scheduler::submit(std::shared_ptr<GenerationJob> job) {
  PreparedGeneration& g = job->generation();
  {
    std::lock_guard<std::mutex> lock(model_mu_);
    try {
      const GenerationPlan plan = model_.check_generation(g.cache, g.shape, g.guided);
      job->set_cache_bytes(plan.cache_bytes);
    } catch (const OutOfBudget& e) {
      throw ApiError(400, api_words(e.what()), "max_tokens", "context_length_exceeded");
    } catch (const Error& e) {
      throw ApiError(400, api_words(e.what()));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_) throw ApiError(503, "the server is shutting down");
  const size_t room = static_cast<size_t>(o_.queue) + static_cast<size_t>(o_.max_batch);
  if (queue_.size() + active_.size() >= room)
    throw ApiError(429, fmt::format("the server is full ({} generations running, {} waiting); retry later",
                                    active_.size(), queue_.size()));
  job->set_id(next_id_++);
  queue_.push_back(job);
  publish_gauges();
  cv_.notify_all();
  return job;
}

void Scheduler::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  idle_cv_.wait(lock, [&] { return queue_.empty() && active_.empty(); });
}

bool Scheduler::draining() const {
  std::lock_guard<std::mutex> lock(mu_);
  return draining_;
}

void Scheduler::publish_gauges() {
  metrics_.set_queue(static_cast<int64_t>(active_.size()), static_cast<int64_t>(queue_.size()), cache_bytes_);
}

void Scheduler::loop() {
  for (;;) {
    std::shared_ptr<GenerationJob> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
      if (stopping_) return;
      while (!queue_.empty() && active_.size() < static_cast<size_t>(o_.max_batch)) {
        active_.push_back(queue_.front());
        queue_.pop_front();
      }
      if (next_ >= active_.size()) next_ = 0;
      job = active_[next_];
      cache_bytes_ = job->cache_bytes();
      publish_gauges();
    }
    if (!job->cancelled()) run_turn(*job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (job->done() || job->cancelled()) {
        active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(next_));
        metrics_.count_tokens(static_cast<int64_t>(job->generation().prompt.size()), job->completion_tokens());
      } else {
        ++next_;
      }
      publish_gauges();
      if (queue_.empty() && active_.empty()) idle_cv_.notify_all();
    }
  }
}

// Steps of one generation up to the end of its block (or of the generation, when its cache
// outlives its blocks, or when it is the only one running).
void Scheduler::run_turn(GenerationJob& job) {
  PreparedGeneration& g = job.generation();
  try {
    for (;;) {
      StepEvent ev;
      {
        std::lock_guard<std::mutex> lock(model_mu_);
        ev = run_step(model_, *g.sampler, g.sequence);
      }
      if (ev.ran_model) metrics_.observe_step(ev.stats.ms / 1000, 1, ev.stats.arena_bytes);
      if (job.after_step()) {
        metrics_.observe_request_latency(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - job.admitted()).count());
        return;
      }
      if (job.cancelled()) return;
      if (ev.block_done && !g.sampler->cache_spans_blocks()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (active_.size() > 1 || !queue_.empty()) return;
      }
    }
  } catch (const ApiError& e) {
    job.fail(e);
  } catch (const std::exception& e) {
    job.fail(ApiError(500, fmt::format("the generation failed: {}", e.what())));
  }
}

}  // namespace mosaic::serve
