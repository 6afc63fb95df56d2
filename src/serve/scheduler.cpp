#include "serve/scheduler.h"

#include <fmt/format.h>

#include <algorithm>

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

namespace {

// Whether a generation's steps may share passes with others' (Model::step_batch).
bool batchable(const PreparedGeneration& g) {
  return !g.sampler->cache_spans_blocks() && g.cache.mode != CacheMode::Sparse;
}

}  // namespace

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
      if (stopping_) return;
      while (!queue_.empty() && active_.size() < static_cast<size_t>(o_.max_batch)) {
        active_.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    const std::vector<std::shared_ptr<GenerationJob>> round = form_round();
    run_round(round);
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The round's generations that go on move behind the others: the next round starts with
      // the generation that waited longest.
      std::vector<std::shared_ptr<GenerationJob>> rest, again;
      for (auto& job : active_) {
        const bool ran = std::find(round.begin(), round.end(), job) != round.end();
        if (ran && (job->done() || job->cancelled())) {
          metrics_.count_tokens(static_cast<int64_t>(job->generation().prompt.size()), job->completion_tokens());
          continue;
        }
        (ran ? again : rest).push_back(job);
      }
      rest.insert(rest.end(), again.begin(), again.end());
      active_ = std::move(rest);
      cache_bytes_ = 0;
      publish_gauges();
      if (queue_.empty() && active_.empty()) idle_cv_.notify_all();
    }
  }
}

std::vector<std::shared_ptr<GenerationJob>> Scheduler::form_round() {
  std::vector<std::shared_ptr<GenerationJob>> round;
  {
    std::lock_guard<std::mutex> lock(mu_);
    round.push_back(active_.front());
    const PreparedGeneration& lead = round.front()->generation();
    if (batchable(lead))
      for (size_t i = 1; i < active_.size(); ++i) {
        const PreparedGeneration& g = active_[i]->generation();
        if (!active_[i]->cancelled() && batchable(g) && g.cache.mode == lead.cache.mode && g.guided == lead.guided)
          round.push_back(active_[i]);
      }
  }
  // As many as the memory plan holds together (each fits alone: submit checked).
  if (round.size() > 1) {
    std::lock_guard<std::mutex> lock(model_mu_);
    for (;;) {
      std::vector<GenerationShape> shapes;
      for (const auto& job : round) shapes.push_back(job->generation().shape);
      const PreparedGeneration& lead = round.front()->generation();
      if (round.size() == 1 || model_.check_batch(lead.cache, shapes, lead.guided).fits) break;
      round.pop_back();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  cache_bytes_ = 0;
  for (const auto& job : round) cache_bytes_ += job->cache_bytes();
  publish_gauges();
  return round;
}

// One block of every generation in the round, their steps in shared passes; a generation whose
// cache outlives its blocks runs alone instead.
void Scheduler::run_round(const std::vector<std::shared_ptr<GenerationJob>>& round) {
  if (round.front()->cancelled()) return;
  if (!batchable(round.front()->generation())) {
    run_alone(*round.front());
    return;
  }
  std::vector<GenerationJob*> in_block;
  for (const auto& job : round)
    if (!job->cancelled()) in_block.push_back(job.get());
  while (!in_block.empty()) {
    std::vector<BatchMember> batch;
    for (GenerationJob* job : in_block) {
      PreparedGeneration& g = job->generation();
      batch.push_back({g.sampler.get(), &g.sequence, job->id()});
    }
    std::vector<StepEvent> events;
    try {
      std::lock_guard<std::mutex> lock(model_mu_);
      events = run_batch_step(model_, batch);
    } catch (const std::exception& e) {
      const ApiError* api = dynamic_cast<const ApiError*>(&e);
      for (GenerationJob* job : in_block)
        job->fail(api ? *api : ApiError(500, fmt::format("the generation failed: {}", e.what())));
      return;
    }
    for (const StepEvent& ev : events)
      if (ev.ran_model) {
        metrics_.observe_step(ev.stats.ms / 1000, static_cast<int64_t>(batch.size()), ev.stats.arena_bytes);
        break;
      }
    std::vector<GenerationJob*> next;
    for (size_t i = 0; i < in_block.size(); ++i) {
      GenerationJob& job = *in_block[i];
      if (job.after_step()) {
        metrics_.observe_request_latency(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - job.admitted()).count());
        continue;
      }
      if (!job.cancelled() && !events[i].block_done) next.push_back(&job);
    }
    in_block = std::move(next);
  }
}

// Steps of one generation up to the end of its block, or of the generation when its cache
// outlives its blocks (or when it is the only one running).
void Scheduler::run_alone(GenerationJob& job) {
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
