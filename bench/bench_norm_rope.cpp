// cpu::rms_norm and cpu::rope (in place) at mosaic-tiny's and LLaDA-8B's widths.
#include "backend/cpu/kernels.h"
#include "bench_util.h"

namespace mosaic::bench {
namespace {

void BM_RmsNorm(benchmark::State& state) {
  const int64_t rows = state.range(0), d = state.range(1);
  const auto x = random_floats(rows * d, 1), w = random_floats(d, 2, 0.5f, 1.5f);
  std::vector<float> y(static_cast<size_t>(rows * d));
  for (auto _ : state) {
    cpu::rms_norm(x.data(), rows, d, w.data(), 1e-5f, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report(state, 4.0 * static_cast<double>(2 * rows * d + d), 4.0 * rows * d);
}
BENCHMARK(BM_RmsNorm)
    ->ArgNames({"rows", "d"})
    ->Args({256, 256})    // tiny
    ->Args({1024, 4096})  // LLaDA-8B
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_Rope(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int heads = static_cast<int>(state.range(1)), hd = static_cast<int>(state.range(2));
  auto x = random_floats(rows * heads * hd, 1);
  const auto inv_freq = rope_inv_freq(10000.0, hd);
  for (auto _ : state) {
    // In place: the angles stay bounded, so the values stay finite however often it runs.
    cpu::rope(x.data(), rows, heads, hd, 0, inv_freq.data());
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  report(state, 4.0 * 2.0 * static_cast<double>(rows * heads * hd), 3.0 * rows * heads * hd);
}
BENCHMARK(BM_Rope)
    ->ArgNames({"rows", "heads", "hd"})
    ->Args({256, 4, 64})     // tiny
    ->Args({1024, 32, 128})  // LLaDA-8B
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace mosaic::bench
