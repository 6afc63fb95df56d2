// Mixture-of-experts routing and expert FFNs on the CPU: the reference the CUDA kernels are held
// to. Routing follows the official gates (LLaDA2.0's LLaDA2MoeGate, OLMoE's softmax top-k) in
// float32; experts run one at a time over the rows routed to them (gather, gate/up GEMMs, SwiGLU,
// down GEMM, weighted scatter-add into the residual).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace mosaic::cpu {

namespace {

// The indices of the `k` largest values among `candidates` (descending; ties: lower index first,
// as a stable descending sort).
void top_indices(const float* v, std::vector<int32_t>& candidates, int k) {
  std::stable_sort(candidates.begin(), candidates.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  candidates.resize(static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(candidates.size()))));
}

// LLaDA2MoeGate: sigmoid scores; the top groups by the sum of their two best biased scores; the
// top k biased scores inside them; weights = the unbiased scores, normalised, x routed_scale.
void route_sigmoid_groups(const float* logits, const float* bias, const MoeRouting& r, int32_t* ids,
                          float* weights) {
  const int E = r.experts, per = E / r.groups;
  std::vector<float> scores(E), biased(E), group(r.groups);
  for (int e = 0; e < E; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    biased[e] = scores[e] + (bias ? bias[e] : 0.0f);
  }
  for (int g = 0; g < r.groups; ++g) {
    float a = -INFINITY, b = -INFINITY;  // the group's two best
    for (int e = g * per; e < (g + 1) * per; ++e) {
      if (biased[e] > a) {
        b = a;
        a = biased[e];
      } else if (biased[e] > b) {
        b = biased[e];
      }
    }
    group[g] = a + b;
  }
  std::vector<int32_t> groups(r.groups);
  std::iota(groups.begin(), groups.end(), 0);
  top_indices(group.data(), groups, r.top_groups);
  std::vector<int32_t> candidates;
  std::sort(groups.begin(), groups.end());
  for (int32_t g : groups)
    for (int e = g * per; e < (g + 1) * per; ++e) candidates.push_back(e);
  top_indices(biased.data(), candidates, r.top_k);
  float sum = 0.0f;
  for (int j = 0; j < r.top_k; ++j) sum += scores[candidates[j]];
  for (int j = 0; j < r.top_k; ++j) {
    ids[j] = candidates[j];
    float w = scores[candidates[j]];
    if (r.top_k > 1) w /= sum + 1e-20f;
    weights[j] = w * r.routed_scale;
  }
}

// OLMoE's gate: softmax over the experts (+ bias); the top k probabilities are the weights.
void route_softmax(const float* logits, const float* bias, const MoeRouting& r, int32_t* ids, float* weights) {
  const int E = r.experts;
  std::vector<float> p(E);
  const float mx = *std::max_element(logits, logits + E);
  double sum = 0;
  for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(logits[e] - mx));
  for (int e = 0; e < E; ++e) p[e] = static_cast<float>(p[e] / sum) + (bias ? bias[e] : 0.0f);
  std::vector<int32_t> candidates(E);
  std::iota(candidates.begin(), candidates.end(), 0);
  top_indices(p.data(), candidates, r.top_k);
  float total = 0.0f;
  for (int j = 0; j < r.top_k; ++j) total += p[candidates[j]];
  for (int j = 0; j < r.top_k; ++j) {
    ids[j] = candidates[j];
    weights[j] = (r.renormalize ? p[candidates[j]] / total : p[candidates[j]]) * r.routed_scale;
  }
}

}  // namespace

void moe_route(const float* h, int64_t rows, int64_t d, const float* gate, const float* bias, const MoeRouting& r,
               int32_t* ids, float* weights, float* logits) {
  if (rows == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), r.experts, static_cast<int>(d), 1.0f,
              h, static_cast<int>(d), gate, static_cast<int>(d), 0.0f, logits, r.experts);
  moe_select(logits, rows, bias, r, ids, weights);
}

void moe_select(const float* logits, int64_t rows, const float* bias, const MoeRouting& r, int32_t* ids,
                float* weights) {
#pragma omp parallel for
  for (int64_t i = 0; i < rows; ++i) {
    const float* l = logits + i * r.experts;
    int32_t* id = ids + i * r.top_k;
    float* w = weights + i * r.top_k;
    if (r.router == Router::SigmoidGroups)
      route_sigmoid_groups(l, bias, r, id, w);
    else
      route_softmax(l, bias, r, id, w);
  }
}

void moe_experts(const float* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                 int64_t ffn, const std::vector<const void*>& experts, float* x, float* workspace,
                 const uint8_t* only) {
  const int64_t n_experts = static_cast<int64_t>(experts.size()) / 3;
  // Each expert's rows and weights, in row order.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(n_experts));
  for (int64_t i = 0; i < rows; ++i)
    for (int j = 0; j < top_k; ++j) {
      const int32_t e = ids[i * top_k + j];
      MOSAIC_CHECK(e >= 0 && e < n_experts, "moe: row {} is routed to expert {} of {}", i, e, n_experts);
      routed[e].emplace_back(i, weights[i * top_k + j]);
    }
  float* xg = workspace;           // [n, d] the expert's rows
  float* g = xg + rows * d;        // [n, ffn]
  float* u = g + rows * ffn;       // [n, ffn]
  float* y = u + rows * ffn;       // [n, d]
  for (int64_t e = 0; e < n_experts; ++e) {
    const auto& list = routed[e];
    const int64_t n = static_cast<int64_t>(list.size());
    if (n == 0 || (only && !only[e])) continue;
    for (int64_t i = 0; i < n; ++i) std::copy_n(h + list[i].first * d, d, xg + i * d);
    const auto* wg = static_cast<const float*>(experts[3 * e]);
    const auto* wu = static_cast<const float*>(experts[3 * e + 1]);
    const auto* wd = static_cast<const float*>(experts[3 * e + 2]);
    matmul(xg, n, d, wg, nullptr, ffn, g);
    matmul(xg, n, d, wu, nullptr, ffn, u);
    swiglu(g, u, n * ffn);
    matmul(g, n, ffn, wd, nullptr, d, y);
    for (int64_t i = 0; i < n; ++i) {
      float* xr = x + list[i].first * d;
      const float w = list[i].second;
      for (int64_t c = 0; c < d; ++c) xr[c] += w * y[i * d + c];
    }
  }
}

}  // namespace mosaic::cpu
