// The router's choice on the device: one warp per row picks the row's top_k experts and their
// weights from the router logits, with the CPU's rules (backend/cpu/moe.cpp): LLaDA2.0's
// sigmoid group-limited gate and OLMoE's softmax top-k. Ties go to the lower index, as the CPU's
// stable descending sort gives them. Exponentials use the device's expf, so a near tie may pick
// differently from the CPU by an ulp; the fp32 verification mode keeps the CPU's choice.
#include <cfloat>
#include <climits>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

namespace mosaic::cuda {

namespace {

constexpr int kWarps = 4;

// (v, i) beats (w, j) when larger, or equal with the lower index.
__device__ __forceinline__ bool beats(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// The warp's best (value, index); every lane gets it.
__device__ __forceinline__ void warp_best(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    const int j = __shfl_xor_sync(0xffffffffu, i, o);
    if (beats(w, j, v, i)) v = w, i = j;
  }
}

// s: this warp's 2 * experts floats of shared memory (scores, then the values ranked).
__global__ void moe_select_kernel(const float* __restrict__ logits, int64_t rows, const bf16* __restrict__ bias,
                                  MoeRouting r, int32_t* __restrict__ ids, float* __restrict__ weights) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= rows) return;
  const int E = r.experts;
  float* score = smem + static_cast<int64_t>(warp) * 2 * E;  // sigmoid scores or probabilities
  float* rank = score + E;                                     // what the top-k ranks
  const float* l = logits + row * E;
  unsigned chosen_groups = 0xffffffffu;  // softmax: every expert is a candidate
  if (r.router == Router::SigmoidGroups) {
    for (int e = lane; e < E; e += 32) {
      score[e] = 1.0f / (1.0f + expf(-l[e]));
      rank[e] = score[e] + (bias ? __bfloat162float(bias[e]) : 0.0f);
    }
    __syncwarp();
    // Group g (lane g): the sum of its two best ranked scores; then the top groups.
    const int per = E / r.groups;
    float gsum = -FLT_MAX;
    if (lane < r.groups) {
      float a = -INFINITY, b = -INFINITY;
      for (int e = lane * per; e < (lane + 1) * per; ++e) {
        const float v = rank[e];
        if (v > a) b = a, a = v;
        else if (v > b) b = v;
      }
      gsum = a + b;
    }
    chosen_groups = 0;
    for (int t = 0; t < r.top_groups; ++t) {
      float v = (lane < r.groups && !(chosen_groups >> lane & 1u)) ? gsum : -INFINITY;
      int i = lane < r.groups && !(chosen_groups >> lane & 1u) ? lane : INT_MAX;
      warp_best(v, i);
      chosen_groups |= 1u << i;
    }
    // Experts outside the chosen groups are no candidates.
    for (int e = lane; e < E; e += 32)
      if (!(chosen_groups >> (e / per) & 1u)) rank[e] = -INFINITY;
  } else {
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
    for (int e = lane; e < E; e += 32) sum += (score[e] = expf(l[e] - mx));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    for (int e = lane; e < E; e += 32) {
      score[e] = score[e] / sum + (bias ? __bfloat162float(bias[e]) : 0.0f);
      rank[e] = score[e];
    }
  }
  __syncwarp();
  // The top k by rank: k rounds of the warp's best, each winner taken out of the running.
  int32_t* id = ids + row * r.top_k;
  float* w = weights + row * r.top_k;
  float total = 0.f;
  for (int j = 0; j < r.top_k; ++j) {
    float v = -INFINITY;
    int i = INT_MAX;
    for (int e = lane; e < E; e += 32)
      if (rank[e] != -INFINITY && beats(rank[e], e, v, i)) v = rank[e], i = e;
    warp_best(v, i);
    if (i == INT_MAX) i = 0;  // fewer candidates than k: cannot happen with validated configs
    __syncwarp();
    if (lane == 0) {
      id[j] = i;
      w[j] = score[i];
      rank[i] = -INFINITY;
    }
    total += score[i];
    __syncwarp();
  }
  if (lane == 0) {
    const bool normalise = r.router == Router::SigmoidGroups ? r.top_k > 1 : r.renormalize;
    const float denom = r.router == Router::SigmoidGroups ? total + 1e-20f : total;
    for (int j = 0; j < r.top_k; ++j) w[j] = (normalise ? w[j] / denom : w[j]) * r.routed_scale;
  }
}

}  // namespace

bool moe_select_supported(const MoeRouting& r) {
  return r.experts > 0 && r.experts <= 1024 && r.top_k > 0 && r.top_k <= r.experts &&
         (r.router != Router::SigmoidGroups || (r.groups > 0 && r.groups <= 32 && r.experts % r.groups == 0));
}

void moe_select(const float* logits, int64_t rows, const bf16* bias, const MoeRouting& r, int32_t* ids,
                float* weights, cudaStream_t s) {
  CUDA_REQUIRE(moe_select_supported(r), "moe_select: " + std::to_string(r.experts) + " experts in " +
                                            std::to_string(r.groups) + " groups is not supported on the device");
  if (rows == 0) return;
  const size_t smem = static_cast<size_t>(kWarps) * 2 * r.experts * sizeof(float);
  const auto blocks = static_cast<unsigned>((rows + kWarps - 1) / kWarps);
  moe_select_kernel<<<blocks, kWarps * 32, smem, s>>>(logits, rows, bias, r, ids, weights);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mosaic::cuda
