#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace mosaic::serve {

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
  return out;
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::count_tokens(int64_t prompt, int64_t generated) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += static_cast<uint64_t>(prompt);
  generated_tokens_ += static_cast<uint64_t>(generated);
}

void Metrics::observe_step(double seconds, int64_t sequences, size_t arena_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  step_seconds_.observe(seconds);
  batch_size_.observe(static_cast<double>(sequences));
  gauges_.arena_bytes = arena_bytes;
}

void Metrics::observe_request_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  request_seconds_.observe(seconds);
}

void Metrics::set_queue(int64_t active, int64_t queued, size_t cache_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.active = active;
  gauges_.queued = queued;
  gauges_.cache_bytes = cache_bytes;
}

void Metrics::set_weight_bytes(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.weight_bytes = bytes;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = "# HELP mosaic_requests_total HTTP requests answered, by endpoint and status.\n"
                    "# TYPE mosaic_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("mosaic_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out += fmt::format("# HELP mosaic_prompt_tokens_total Prompt tokens of the generations run.\n"
                     "# TYPE mosaic_prompt_tokens_total counter\nmosaic_prompt_tokens_total {}\n"
                     "# HELP mosaic_generated_tokens_total Tokens returned to clients (up to end of text or a stop).\n"
                     "# TYPE mosaic_generated_tokens_total counter\nmosaic_generated_tokens_total {}\n",
                     prompt_tokens_, generated_tokens_);
  out += step_seconds_.render("mosaic_step_seconds", "Wall time of one denoising step (one model pass).");
  out += batch_size_.render("mosaic_step_batch_size", "Sequences one model pass ran.");
  out += request_seconds_.render("mosaic_request_seconds", "Time from a generation's admission to its last token.");
  out += fmt::format("# HELP mosaic_active_sequences Generations being denoised.\n"
                     "# TYPE mosaic_active_sequences gauge\nmosaic_active_sequences {}\n"
                     "# HELP mosaic_queue_depth Generations waiting for a slot.\n"
                     "# TYPE mosaic_queue_depth gauge\nmosaic_queue_depth {}\n"
                     "# HELP mosaic_arena_bytes Activation arena of the last step (caches included).\n"
                     "# TYPE mosaic_arena_bytes gauge\nmosaic_arena_bytes {}\n"
                     "# HELP mosaic_cache_bytes Planned key/value cache bytes of the generation whose turn it is.\n"
                     "# TYPE mosaic_cache_bytes gauge\nmosaic_cache_bytes {}\n"
                     "# HELP mosaic_weight_bytes Resident weight bytes.\n"
                     "# TYPE mosaic_weight_bytes gauge\nmosaic_weight_bytes {}\n",
                     gauges_.active, gauges_.queued, gauges_.arena_bytes, gauges_.cache_bytes, gauges_.weight_bytes);
  return out;
}

}  // namespace mosaic::serve
