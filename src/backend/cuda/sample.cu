// The sampler on mask-only logits: per row, the committed token (argmax, or gumbel-max
// with the counter noise) and its softmax probability, in fp32 (gumbel scores in double
// registers, never a float64 tensor); then the rows ranked by confidence in one block.
// The greedy rule has a one-pass kernel of its own (the noisy one reads a row twice).
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>

#include "backend/cuda/block_sum.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "sampling/counter_noise.h"

namespace mosaic::cuda {

namespace {

constexpr int kThreads = 1024;

struct Best {
  double score;
  int64_t idx;
};

// Larger score wins; equal scores go to the lower index (torch.argmax's first maximum).
__device__ inline Best better(Best a, Best b) {
  if (b.score > a.score || (b.score == a.score && b.idx < a.idx)) return b;
  return a;
}

__device__ Best block_best(Best v, Best* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    Best other{__shfl_xor_sync(0xffffffffu, v.score, o), __shfl_xor_sync(0xffffffffu, v.idx, o)};
    v = better(v, other);
  }
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? shared[threadIdx.x] : Best{-DBL_MAX, INT64_MAX};
    for (int o = 16; o > 0; o >>= 1) {
      Best other{__shfl_xor_sync(0xffffffffu, v.score, o), __shfl_xor_sync(0xffffffffu, v.idx, o)};
      v = better(v, other);
    }
    if (threadIdx.x == 0) shared[0] = v;
  }
  __syncthreads();
  Best r = shared[0];
  __syncthreads();
  return r;
}

template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? shared[threadIdx.x] : (kMax ? -FLT_MAX : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = kMax ? fmaxf(v, other) : v + other;
    }
    if (threadIdx.x == 0) shared[0] = v;
  }
  __syncthreads();
  float r = shared[0];
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kThreads) sample_rows_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                const int32_t* __restrict__ pos, SampleParams p,
                                                                int32_t* __restrict__ token, float* __restrict__ conf) {
  __shared__ Best best_shared[32];
  __shared__ float f_shared[32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * vocab;
  const uint64_t position = static_cast<uint64_t>(pos[row]);

  Best b{-DBL_MAX, INT64_MAX};
  float mx = -FLT_MAX;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float lv = l[v];
    mx = fmaxf(mx, lv);
    double score = lv;
    if (p.temperature != 0.0) {
      const double u = counter_uniform(p.seed, kGumbelStream, p.step, position, static_cast<uint64_t>(v));
      score = static_cast<double>(lv) - p.temperature * log(-log(u));
    }
    b = better(b, Best{score, v});
  }
  b = block_best(b, best_shared);
  mx = block_reduce<true>(mx, f_shared);

  if (p.confidence == Confidence::Random) {
    if (threadIdx.x == 0) {
      token[row] = static_cast<int32_t>(b.idx);
      conf[row] = static_cast<float>(counter_uniform(p.seed, kRemaskStream, p.step, position, 0));
    }
    return;
  }
  float sum = 0.f;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) sum += expf(l[v] - mx);
  sum = block_reduce<false>(sum, f_shared);
  if (threadIdx.x == 0) {
    token[row] = static_cast<int32_t>(b.idx);
    conf[row] = expf(l[b.idx] - mx) / sum;
  }
}

// LLaDA's greedy rule (temperature 0) in one pass over the row: each thread keeps its first
// maximum and the softmax sum relative to its running maximum (rescaled when the maximum
// grows), the block merges them. The token's probability is 1 / sum (its own term is exp(0)).
constexpr int kGreedyThreads = 512;

struct MaxSum {
  float mx;
  float sum;
  int64_t idx;
};

__device__ inline MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.mx, b.mx);
  const float sum = a.sum * expf(a.mx - m) + b.sum * expf(b.mx - m);
  const bool b_wins = b.mx > a.mx || (b.mx == a.mx && b.idx < a.idx);
  return {m, sum, b_wins ? b.idx : a.idx};
}

__device__ inline void add(MaxSum& t, float lv, int64_t v) {
  if (lv > t.mx) {
    t.sum = t.sum * expf(t.mx - lv) + 1.f;
    t.mx = lv;
    t.idx = v;
  } else {
    t.sum += expf(lv - t.mx);
  }
}

template <bool kVec4>
__global__ void __launch_bounds__(kGreedyThreads) greedy_rows_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                    const int32_t* __restrict__ pos, SampleParams p,
                                                                    int32_t* __restrict__ token,
                                                                    float* __restrict__ conf) {
  __shared__ MaxSum warp_best[kGreedyThreads / 32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * vocab;
  MaxSum t{-FLT_MAX, 0.f, INT64_MAX};
  if constexpr (kVec4) {  // vocab % 4 == 0 and 16-byte aligned rows
    // Four running states, one per lane of the float4, so that the loads and exponentials of
    // consecutive elements do not wait on each other (each state's indices still rise).
    MaxSum u[4] = {t, t, t, t};
    const float4* l4 = reinterpret_cast<const float4*>(l);
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < vocab / 4; c += blockDim.x) {
      const float4 q = l4[c];
      add(u[0], q.x, 4 * c);
      add(u[1], q.y, 4 * c + 1);
      add(u[2], q.z, 4 * c + 2);
      add(u[3], q.w, 4 * c + 3);
    }
    t = merge(merge(u[0], u[1]), merge(u[2], u[3]));
  } else {
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) add(t, l[v], v);
  }
  for (int o = 16; o > 0; o >>= 1)
    t = merge(t, MaxSum{__shfl_xor_sync(0xffffffffu, t.mx, o), __shfl_xor_sync(0xffffffffu, t.sum, o),
                        __shfl_xor_sync(0xffffffffu, t.idx, o)});
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = t;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kGreedyThreads / 32; ++w) t = merge(t, warp_best[w]);
    token[row] = static_cast<int32_t>(t.idx);
    conf[row] = p.confidence == Confidence::Random
                    ? static_cast<float>(counter_uniform(p.seed, kRemaskStream, p.step, static_cast<uint64_t>(pos[row]), 0))
                    : 1.f / t.sum;
  }
}

// Dream's sample_tokens on an unfiltered row (top-p / top-k rows go to the host): z = logits / T
// (the logits at T = 0), probabilities in double; the token is the first maximum, or at T > 0
// torch's categorical draw argmax p / (-log u) (the common 1/sum left out: same order); the
// confidence is the token's probability, top-1 minus top-2, or the negative entropy.
__global__ void __launch_bounds__(kThreads) dream_sample_rows_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                      const int32_t* __restrict__ pos, SampleParams p,
                                                                      int32_t* __restrict__ token,
                                                                      float* __restrict__ conf) {
  __shared__ Best best_shared[32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * vocab;
  const uint64_t position = static_cast<uint64_t>(pos[row]);
  const bool tempered = p.temperature > 0.0;
  auto z = [&](int64_t v) { return tempered ? static_cast<double>(l[v]) / p.temperature : static_cast<double>(l[v]); };

  Best top{-DBL_MAX, INT64_MAX};
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) top = better(top, Best{z(v), v});
  top = block_best(top, best_shared);
  const double mx = top.score;

  double sum = 0.0;
  Best second{-DBL_MAX, INT64_MAX}, drawn{-DBL_MAX, INT64_MAX};
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const double zv = z(v), e = exp(zv - mx);
    sum += e;
    if (v != top.idx) second = better(second, Best{zv, v});
    if (tempered) {
      const double u = counter_uniform(p.seed, kGumbelStream, p.step, position, static_cast<uint64_t>(v));
      drawn = better(drawn, Best{e / -log(u), v});
    }
  }
  sum = block_sum(sum);
  if (p.confidence == Confidence::Margin) second = block_best(second, best_shared);
  if (tempered) drawn = block_best(drawn, best_shared);
  double neg_entropy = 0.0;
  if (p.confidence == Confidence::NegEntropy) {
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
      const double pv = exp(z(v) - mx) / sum;
      neg_entropy += pv * log(pv + 1e-10);
    }
    neg_entropy = block_sum(neg_entropy);
  }
  if (threadIdx.x == 0) {
    const int64_t x0 = tempered ? drawn.idx : top.idx;
    token[row] = static_cast<int32_t>(x0);
    double c = exp(z(x0) - mx) / sum;
    if (p.confidence == Confidence::Margin)
      c = 1.0 / sum - (second.idx == INT64_MAX ? 0.0 : exp(second.score - mx) / sum);
    else if (p.confidence == Confidence::NegEntropy)
      c = neg_entropy;
    conf[row] = static_cast<float>(c);
  }
}

// Bitonic sort of (confidence, index) in shared memory by one block: most confident first,
// equal confidences by lower index — the CPU's stable sort order.
__device__ void rank_block(const float* __restrict__ conf, int n, int32_t* __restrict__ order, unsigned char* smem) {
  int n_pow2 = 1;
  while (n_pow2 < n) n_pow2 <<= 1;
  float* key = reinterpret_cast<float*>(smem);
  int* idx = reinterpret_cast<int*>(key + n_pow2);
  for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) {
    key[i] = i < n ? conf[i] : -FLT_MAX;
    idx[i] = i < n ? i : INT_MAX;
  }
  __syncthreads();
  for (int size = 2; size <= n_pow2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) {
        const int j = i ^ stride;
        if (j <= i) continue;
        const bool descending = (i & size) == 0;
        // "first" = the element that should come earlier in the final order.
        const bool i_first = key[i] > key[j] || (key[i] == key[j] && idx[i] < idx[j]);
        if (i_first != descending) {
          float tk = key[i];
          key[i] = key[j];
          key[j] = tk;
          int ti = idx[i];
          idx[i] = idx[j];
          idx[j] = ti;
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) order[i] = idx[i];
}

__global__ void rank_rows_kernel(const float* __restrict__ conf, int n, int32_t* __restrict__ order) {
  extern __shared__ unsigned char smem[];
  rank_block(conf, n, order, smem);
}

// Ranges by value: a batch's sequences in one launch, one block each.
constexpr int kRangesPerLaunch = 128;
struct Ranges {
  int32_t first[kRangesPerLaunch];
  int32_t count[kRangesPerLaunch];
};

__global__ void rank_ranges_kernel(const float* __restrict__ conf, const Ranges r, int32_t* __restrict__ order) {
  extern __shared__ unsigned char smem[];
  const int b = blockIdx.x;
  rank_block(conf + r.first[b], r.count[b], order + r.first[b], smem);
}

}  // namespace

void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                 int32_t* token, float* conf, cudaStream_t s) {
  if (rows == 0) return;
  if (p.temperature == 0.0) {
    const auto grid = static_cast<unsigned>(rows);
    if (vocab % 4 == 0 && (reinterpret_cast<uintptr_t>(logits) & 15u) == 0)
      greedy_rows_kernel<true><<<grid, kGreedyThreads, 0, s>>>(logits, vocab, pos, p, token, conf);
    else
      greedy_rows_kernel<false><<<grid, kGreedyThreads, 0, s>>>(logits, vocab, pos, p, token, conf);
  } else {
    sample_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(logits, vocab, pos, p, token, conf);
  }
  CUDA_CHECK_LAUNCH();
}

void dream_sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                       int32_t* token, float* conf, cudaStream_t s) {
  if (rows == 0) return;
  CUDA_REQUIRE(!p.filters(), "cuda dream_sample_rows: top-p / top-k rows are sampled on the host");
  dream_sample_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(logits, vocab, pos, p, token, conf);
  CUDA_CHECK_LAUNCH();
}

namespace {

size_t rank_smem(int64_t n) {
  int64_t n_pow2 = 1;
  while (n_pow2 < n) n_pow2 <<= 1;
  return static_cast<size_t>(n_pow2) * (sizeof(float) + sizeof(int));
}

// A kernel's shared-memory limit is an attribute per device: raised once on each.
template <class Kernel>
void allow_rank_smem(Kernel k) {
  static std::mutex mu;
  static std::set<int> done;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const std::lock_guard<std::mutex> lock(mu);
  if (!done.insert(dev).second) return;
  CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(rank_smem(kMaxRankRows))));
}

}  // namespace

void rank_rows(const float* conf, int64_t n, int32_t* order, cudaStream_t s) {
  if (n == 0) return;
  CUDA_REQUIRE(n <= kMaxRankRows, "cuda rank_rows: " + std::to_string(n) + " rows is past the one-block limit");
  allow_rank_smem(rank_rows_kernel);
  rank_rows_kernel<<<1, 1024, rank_smem(n), s>>>(conf, static_cast<int>(n), order);
  CUDA_CHECK_LAUNCH();
}

void rank_rows_in_ranges(const float* conf, const int64_t* first, const int64_t* count, int64_t n_ranges,
                         int32_t* order, cudaStream_t s) {
  allow_rank_smem(rank_ranges_kernel);
  for (int64_t r0 = 0; r0 < n_ranges; r0 += kRangesPerLaunch) {
    Ranges r{};
    int blocks = 0;
    int64_t most = 0;
    for (int64_t i = r0; i < std::min(n_ranges, r0 + kRangesPerLaunch); ++i) {
      if (count[i] == 0) continue;
      CUDA_REQUIRE(count[i] <= kMaxRankRows && first[i] + count[i] <= INT32_MAX,
                   "cuda rank_rows_in_ranges: a range of " + std::to_string(count[i]) + " rows at " +
                       std::to_string(first[i]) + " is past the one-block limit");
      r.first[blocks] = static_cast<int32_t>(first[i]);
      r.count[blocks] = static_cast<int32_t>(count[i]);
      most = std::max(most, count[i]);
      ++blocks;
    }
    if (blocks == 0) continue;
    rank_ranges_kernel<<<blocks, 1024, rank_smem(most), s>>>(conf, r, order);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace mosaic::cuda
