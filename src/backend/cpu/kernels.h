#pragma once
// The CPU kernels, one per op, in plain float32. They are the reference the CUDA kernels
// are tested against, and what CI runs.
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace mosaic::cpu {

void embed(const int32_t* ids, int64_t rows, const float* table, int64_t d, float* out);
void rms_norm(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y);
// accumulate: c += a w^T (+ bias), the product rounded to float before the add, as a separate add would.
void matmul(const float* a, int64_t rows, int64_t k, const float* w, const float* bias, int64_t n, float* c,
            bool accumulate = false);
// Row i has position positions[i] when positions is given, else pos0 + i. The first `rot`
// dims of each head rotate (inv_freq holds rot / 2 frequencies); rot 0: all hd.
void rope(float* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq,
          const int32_t* positions = nullptr, int rot = 0);
// Query rows per tile of scores; the workspace holds one tile per OpenMP thread:
// cpu_traits().attn_workspace_rows = kAttentionTile * threads rows of kv_rows floats.
constexpr int64_t kAttentionTile = 64;
// Over kv's keys, then more's (Backend::attention); the scores of a tile span both.
void attention(const float* q, int64_t rows, KvRows kv, KvRows more, int heads, int kv_heads, int hd, float scale,
               float* out, float* workspace, const AttentionMask& mask = {});
inline void attention(const float* q, int64_t rows, const float* k, const float* v, int64_t kv_rows, int heads,
                      int kv_heads, int hd, float scale, float* out, float* workspace) {
  attention(q, rows, {k, v, kv_rows}, {}, heads, kv_heads, hd, scale, out, workspace);
}
void swiglu(float* g, const float* u, int64_t n);
void gather_rows(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out);
void scatter_rows(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out);
// Sparse-dLLM's eviction scores (see Backend::cache_select): pooled[j] for the n outside rows.
// qbar: heads*hd floats of scratch.
void cache_scores(const float* q_block, int64_t block_rows, const float* k, const int32_t* outside, int64_t n,
                  int heads, int kv_heads, int hd, int kernel, float* qbar, float* pooled);
// The `keep` indices j of the largest scores (ties: lower j), ascending.
void top_rows(const float* scores, int64_t n, int64_t keep, int32_t* kept);
void cache_select(const float* q_block, int64_t block_rows, const float* k, const float* v, const int32_t* outside,
                  int64_t n, int heads, int kv_heads, int hd, int kernel, int64_t keep, float* scores, int32_t* kept,
                  float* k_cache, float* v_cache);
// Backend::moe_route / moe_experts.
void moe_route(const float* h, int64_t rows, int64_t d, const float* gate, const float* bias, const MoeRouting& r,
               int32_t* ids, float* weights, float* logits);
// The choice from the router's logits [rows, experts] (moe_route after its product).
void moe_select(const float* logits, int64_t rows, const float* bias, const MoeRouting& r, int32_t* ids,
                float* weights);
void moe_experts(const float* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                 int64_t ffn, const std::vector<const void*>& experts, float* x, float* workspace,
                 const uint8_t* only = nullptr);
void cfg_combine(float* cond, const float* uncond, int64_t n, float scale);
void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                 int32_t* token, float* conf);
void rank_rows(const float* conf, int64_t n, int32_t* order);

}  // namespace mosaic::cpu
