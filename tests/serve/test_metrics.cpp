// /metrics: Prometheus text whose histograms are cumulative and whose counters count.
#include <gtest/gtest.h>

#include "serve/metrics.h"

namespace mosaic::serve {
namespace {

TEST(Metrics, PrometheusTextCountsAndCumulativeBuckets) {
  Metrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 429);
  m.count_tokens(10, 32);
  m.observe_step(0.003, 1, 1000);
  m.observe_step(0.2, 1, 2000);
  m.set_queue(3, 5, 4096);
  const std::string t = m.render();
  EXPECT_NE(t.find("mosaic_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("mosaic_requests_total{endpoint=\"/v1/completions\",status=\"429\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_generated_tokens_total 32\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_step_seconds_bucket{le=\"0.0025\"} 0\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_step_seconds_bucket{le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_step_seconds_bucket{le=\"0.25\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_step_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_step_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_active_sequences 3\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_queue_depth 5\n"), std::string::npos);
  EXPECT_NE(t.find("mosaic_arena_bytes 2000\n"), std::string::npos);
  EXPECT_NE(t.find("# TYPE mosaic_step_seconds histogram\n"), std::string::npos);
}

}  // namespace
}  // namespace mosaic::serve
