#include "offload/simulated_costs.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"

namespace mosaic::offload {

namespace {

template <typename F>
double best_seconds(int repeats, F&& f) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

OffloadCosts measure_simulated_costs(int64_t d, int64_t ffn) {
  OffloadCosts c;
  c.expert_bytes = 3.0 * static_cast<double>(d * ffn) * sizeof(float);
  const size_t n = std::max<size_t>(static_cast<size_t>(c.expert_bytes), size_t{1} << 24);
  std::vector<std::byte> src(n, std::byte{1}), dst(n);
  c.h2d_bytes_per_s = static_cast<double>(n) / best_seconds(3, [&] { std::memcpy(dst.data(), src.data(), n); });
  // One expert (gate and up [ffn, d], down [d, ffn]) over 1 and over 8 rows with the CPU kernel.
  std::vector<float> w(static_cast<size_t>(3 * d * ffn), 0.01f), x(static_cast<size_t>(8 * d), 0.1f),
      g(static_cast<size_t>(8 * ffn)), u(g.size()), y(x.size());
  auto expert = [&](int64_t rows) {
    cpu::matmul(x.data(), rows, d, w.data(), nullptr, ffn, g.data());
    cpu::matmul(x.data(), rows, d, w.data() + d * ffn, nullptr, ffn, u.data());
    cpu::swiglu(g.data(), u.data(), rows * ffn);
    cpu::matmul(g.data(), rows, ffn, w.data() + 2 * d * ffn, nullptr, d, y.data());
  };
  const double one = best_seconds(5, [&] { expert(1); }), eight = best_seconds(5, [&] { expert(8); });
  c.cpu_s_per_expert = one;
  c.cpu_s_per_row = std::max(0.0, (eight - one) / 7.0);
  return c;
}

}  // namespace mosaic::offload
