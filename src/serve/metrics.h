#pragma once
// The server's counters, gauges and histograms, rendered as Prometheus text for /metrics.
// Thread-safe: HTTP threads count requests, the scheduler's thread counts steps.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mosaic::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  // `name`_bucket{le=...}, `name`_sum, `name`_count.
  std::string render(const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct Gauges {
  int64_t active = 0, queued = 0;
  size_t arena_bytes = 0, cache_bytes = 0, weight_bytes = 0;
};

class Metrics {
 public:
  void count_request(const std::string& endpoint, int status);
  void count_tokens(int64_t prompt, int64_t generated);
  // One model step: its wall time and the sequences it ran.
  void observe_step(double seconds, int64_t sequences, size_t arena_bytes);
  void observe_request_latency(double seconds);
  void set_queue(int64_t active, int64_t queued, size_t cache_bytes);
  void set_weight_bytes(size_t bytes);
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  Histogram step_seconds_{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
  Histogram batch_size_{{1, 2, 4, 8, 16, 32, 64}};
  Histogram request_seconds_{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  Gauges gauges_;
};

}  // namespace mosaic::serve
