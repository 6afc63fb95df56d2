#pragma once
// Helpers shared by the kernel micro-benchmarks: random inputs, and the CPU backend's
// threading (OpenMP splits the work, each thread runs a one-thread OpenBLAS; see
// src/backend/cpu/linear.cpp), set before any benchmark runs.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <random>
#include <vector>

namespace mosaic::bench {

inline const bool kOneBlasThread = [] {
  openblas_set_num_threads(1);
  return true;
}();

// n floats uniform in [lo, hi), the same for the same seed.
inline std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Work per iteration, reported as rates over the whole run: bytes (bytes_per_second) and,
// for the compute-bound kernels, floating-point operations (FLOP/s).
inline void report(benchmark::State& state, double bytes, double flops = 0) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  if (flops > 0) state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace mosaic::bench
