// cpu::matmul (c = a w^T, w in PyTorch's [out, in] layout) at the shapes of a step:
// mosaic-tiny's FFN and LM head, and one LLaDA-8B projection slice.
#include "backend/cpu/kernels.h"
#include "bench_util.h"

namespace mosaic::bench {
namespace {

void BM_Matmul(benchmark::State& state) {
  const int64_t rows = state.range(0), k = state.range(1), n = state.range(2);
  const auto a = random_floats(rows * k, 1), w = random_floats(n * k, 2, -0.05f, 0.05f);
  std::vector<float> c(static_cast<size_t>(rows * n));
  for (auto _ : state) {
    cpu::matmul(a.data(), rows, k, w.data(), nullptr, n, c.data());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  report(state, 4.0 * static_cast<double>(rows * k + n * k + rows * n), 2.0 * rows * k * n);
}
BENCHMARK(BM_Matmul)
    ->ArgNames({"rows", "k", "n"})
    ->Args({256, 256, 768})    // tiny: FFN up
    ->Args({256, 768, 256})    // tiny: FFN down
    ->Args({64, 256, 4096})    // tiny: LM head over 64 masked rows
    ->Args({128, 4096, 4096})  // LLaDA-8B: a q/k/v/o projection
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace mosaic::bench
