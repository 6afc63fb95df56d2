// cpu::swiglu (g = silu(g) * u, in place): memory-bound, mosaic-tiny's and LLaDA-8B's FFN widths.
#include "backend/cpu/kernels.h"
#include "bench_util.h"

namespace mosaic::bench {
namespace {

void BM_SwiGlu(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  const auto g0 = random_floats(n, 1), u = random_floats(n, 2);
  auto g = g0;
  for (auto _ : state) {
    state.PauseTiming();
    g = g0;  // in place: fresh inputs each time keep the values from shrinking to zero
    state.ResumeTiming();
    cpu::swiglu(g.data(), u.data(), n);
    benchmark::DoNotOptimize(g.data());
    benchmark::ClobberMemory();
  }
  report(state, 4.0 * 3.0 * static_cast<double>(n));  // read g and u, write g
}
BENCHMARK(BM_SwiGlu)
    ->ArgNames({"rows", "ffn"})
    ->Args({256, 768})     // tiny
    ->Args({256, 12288})   // LLaDA-8B
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace mosaic::bench
