#include "offload/measured_costs.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <vector>

#include <omp.h>

#include "offload/cpu_experts.h"

namespace mosaic::offload {

OffloadCosts measure_costs(Backend& be, int64_t d, int64_t ffn) {
  OffloadCosts c;
  const size_t es = be.weight_elem_size();
  const bool bf16 = es == 2;
  c.expert_bytes = 3.0 * static_cast<double>(d * ffn) * static_cast<double>(es);
  c.h2d_bytes_per_s = be.host_to_device_bytes_per_s();
  // One expert (gate and up [ffn, d], down [d, ffn]) over 1 and over 7 rows with the CPU kernel
  // an offloaded layer runs for few rows, in the backend's weight type.
  std::vector<std::byte> w(static_cast<size_t>(c.expert_bytes)), h(static_cast<size_t>(8 * d) * es);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::byte{static_cast<unsigned char>(i % 61 == 0 ? 0x3c : 0)};
  std::vector<const void*> host = {w.data(), w.data() + d * ffn * es, w.data() + 2 * d * ffn * es};
  std::vector<int32_t> ids(8, 0);
  std::vector<float> wt(8, 1.0f), y(static_cast<size_t>(8 * d));
  const uint8_t off = 0;
  // Once untimed: the first call starts the CPU's threads.
  cpu_experts(h.data(), 1, d, ids.data(), wt.data(), 1, ffn, host, bf16, &off, y.data());
  auto seconds = [&](int64_t rows) {
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      cpu_experts(h.data(), rows, d, ids.data(), wt.data(), 1, ffn, host, bf16, &off, y.data());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  c.cpu_s_per_expert = seconds(1);
  c.cpu_s_per_row = std::max(0.0, (seconds(7) - c.cpu_s_per_expert) / 6.0);
  // Many experts of one row each, in one call as a layer runs them (each expert's own weights):
  // their time against as many single experts' gives the speedup.
  const int n = std::clamp(omp_get_max_threads(), 1, 16);
  std::vector<std::byte> many(static_cast<size_t>(c.expert_bytes) * static_cast<size_t>(n));
  for (size_t i = 0; i < many.size(); i += 61) many[i] = std::byte{0x3c};
  std::vector<const void*> hosts;
  for (int e = 0; e < n; ++e)
    for (int k = 0; k < 3; ++k) hosts.push_back(many.data() + (static_cast<size_t>(e) * 3 + k) * d * ffn * es);
  std::vector<std::byte> hn(static_cast<size_t>(n * d) * es);
  std::vector<int32_t> nid(static_cast<size_t>(n));
  std::iota(nid.begin(), nid.end(), 0);
  std::vector<float> nwt(static_cast<size_t>(n), 1.0f), ny(static_cast<size_t>(n * d));
  std::vector<uint8_t> noff(static_cast<size_t>(n), 0);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu_experts(hn.data(), n, d, nid.data(), nwt.data(), 1, ffn, hosts, bf16, noff.data(), ny.data());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  c.cpu_parallel_speedup = std::max(1.0, static_cast<double>(n) * c.cpu_s_per_expert / best);
  return c;
}

}  // namespace mosaic::offload
