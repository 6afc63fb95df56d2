// cpu::attention (bidirectional, tiled scores, BLAS for q k^T and s v): mosaic-tiny's
// heads, LLaDA-8B's (32/32/128) and Dream-7B's grouped ones (28/4/128).
#include <cmath>

#include "backend/cpu/kernels.h"
#include "bench_util.h"

namespace mosaic::bench {
namespace {

void BM_Attention(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int heads = static_cast<int>(state.range(1)), kv_heads = static_cast<int>(state.range(2)),
            hd = static_cast<int>(state.range(3));
  const int64_t kv_rows = rows;
  const auto q = random_floats(rows * heads * hd, 1), k = random_floats(kv_rows * kv_heads * hd, 2),
             v = random_floats(kv_rows * kv_heads * hd, 3);
  std::vector<float> out(static_cast<size_t>(rows * heads * hd));
  // One tile of scores per OpenMP thread, as the planner sizes it.
  std::vector<float> workspace(static_cast<size_t>(cpu_traits().attn_workspace_rows * kv_rows));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (auto _ : state) {
    cpu::attention(q.data(), rows, k.data(), v.data(), kv_rows, heads, kv_heads, hd, scale, out.data(),
                   workspace.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = 4.0 * (2.0 * rows * heads * hd + 2.0 * kv_rows * kv_heads * hd);
  report(state, bytes, 4.0 * rows * kv_rows * heads * hd);  // q k^T and s v; the softmax not counted
}
BENCHMARK(BM_Attention)
    ->ArgNames({"rows", "heads", "kv_heads", "hd"})
    ->Args({256, 4, 4, 64})      // tiny
    ->Args({512, 32, 32, 128})   // LLaDA-8B
    ->Args({512, 28, 4, 128})    // Dream-7B (GQA)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace mosaic::bench
