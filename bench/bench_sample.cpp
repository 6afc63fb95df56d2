// cpu::sample_rows at temperature 0 (argmax and its softmax confidence, in float64) over
// the masked rows' logits: mosaic-tiny's vocabulary and LLaDA-8B's.
#include <numeric>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "bench_util.h"

namespace mosaic::bench {
namespace {

void BM_SampleRows(benchmark::State& state) {
  const int64_t rows = state.range(0), vocab = state.range(1);
  const auto logits = random_floats(rows * vocab, 1, -10.0f, 10.0f);
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<int32_t> token(static_cast<size_t>(rows));
  std::vector<float> conf(static_cast<size_t>(rows));
  SampleParams p;  // the defaults: greedy
  p.temperature = 0;
  for (auto _ : state) {
    cpu::sample_rows(logits.data(), rows, vocab, pos.data(), p, token.data(), conf.data());
    benchmark::DoNotOptimize(token.data());
    benchmark::DoNotOptimize(conf.data());
    benchmark::ClobberMemory();
  }
  report(state, 4.0 * static_cast<double>(rows * vocab));
}
BENCHMARK(BM_SampleRows)
    ->ArgNames({"rows", "vocab"})
    ->Args({64, 4096})     // tiny
    ->Args({64, 126464})   // LLaDA-8B
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace mosaic::bench
