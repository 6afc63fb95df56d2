#pragma once
// The CUDA kernels, one per op. Activations and weights are bf16 (row-major); statistics
// and logits are fp32. Each has its CPU counterpart in backend/cpu/kernels.h as its oracle.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace mosaic::cuda {

using bf16 = __nv_bfloat16;

// Blocks for a grid-stride loop over n items: enough to fill an H100 several times over.
unsigned grid_for(int64_t n, int threads);

void embed(const int32_t* ids, int64_t rows, const bf16* table, int64_t d, bf16* out, cudaStream_t s);
void rms_norm(const bf16* x, int64_t rows, int64_t d, const bf16* w, float eps, bf16* y, cudaStream_t s);
// The plain two-pass form of rms_norm (any width): its fallback, and its oracle in the GPU tests.
void rms_norm_two_pass(const bf16* x, int64_t rows, int64_t d, const bf16* w, float eps, bf16* y, cudaStream_t s);
// inv_freq: device array of rot/2 floats (rope_inv_freq()). Row i has position positions[i]
// (device, i32) when positions is given, else pos0 + i. x 16-byte aligned (arena tensors are).
// rot: the first rot dims of each head rotate (0: all hd).
void rope(bf16* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq, const int32_t* positions,
          cudaStream_t s, int rot = 0);
// One thread per rotated pair, any head_dim: rope's fallback, and its oracle in the GPU tests.
void rope_pairwise(bf16* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq,
                   const int32_t* positions, cudaStream_t s, int rot = 0);
void swiglu(bf16* g, const bf16* u, int64_t n, cudaStream_t s);
void cfg_combine(float* cond, const float* uncond, int64_t n, float scale, cudaStream_t s);
void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                 int32_t* token, float* conf, cudaStream_t s);
// Dream's rule (sampling/sample_params.h) on rows without top-p / top-k filters.
void dream_sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos, const SampleParams& p,
                       int32_t* token, float* conf, cudaStream_t s);
// order[i] = index of the i-th largest conf (ties: lower index first), for n <= kMaxRankRows.
constexpr int64_t kMaxRankRows = 8192;
void rank_rows(const float* conf, int64_t n, int32_t* order, cudaStream_t s);
// rank_rows on each of n_ranges ranges of rows apart, in one launch: order[first[r] + i] = index
// within range r of its i-th largest conf; every count <= kMaxRankRows.
void rank_rows_in_ranges(const float* conf, const int64_t* first, const int64_t* count, int64_t n_ranges,
                         int32_t* order, cudaStream_t s);

// Key/value cache kernels (kv_cache.cu). out[idx[i]] = x[i] for rows of d elements.
void scatter_rows(const bf16* x, int64_t d, const int32_t* idx, int64_t rows, bf16* out, cudaStream_t s);
void scatter_rows_f32(const float* x, int64_t d, const int32_t* idx, int64_t rows, float* out, cudaStream_t s);
// Sparse-dLLM's eviction scores, bit for bit cpu::cache_scores (Backend::cache_select):
// qbar [heads*hd] the mean query, raw [n] the unpooled scores, pooled [n] the max-pooled ones;
// all device fp32, raw and pooled distinct buffers. q_block [block_rows, heads*hd] and
// k [*, kv_heads*hd] in the mode's activation type.
void cache_scores(const bf16* q_block, int64_t block_rows, const bf16* k, const int32_t* outside, int64_t n, int heads,
                  int kv_heads, int hd, int kernel, float* qbar, float* raw, float* pooled, cudaStream_t s);
void cache_scores_f32(const float* q_block, int64_t block_rows, const float* k, const int32_t* outside, int64_t n,
                      int heads, int kv_heads, int hd, int kernel, float* qbar, float* raw, float* pooled,
                      cudaStream_t s);

// Flash-style bidirectional attention: q [rows, heads*hd], k/v [kv_rows, kv_heads*hd],
// out [rows, heads*hd]; never materialises the rows x kv_rows scores. hd in {64, 128}.
void flash_attention(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, int heads,
                     int kv_heads, int hd, float scale, bf16* out, cudaStream_t s);
// The same over the keys of (k, v, kv_rows) and then (k2, v2, kv_rows2) (0 rows: none), with
// the keys cut into splits whose softmaxes are merged at the end: for keys in two places, and
// for few query rows over many keys. workspace: device fp32 scratch for the splits' partial
// outputs (query rows run in chunks that fit it); splits: 0 picks enough to fill one wave of
// the SMs. One split (a batch's cached step fills the GPU with query tiles alone) writes the
// output directly, with no partials.
// block > 0: block-causal, query i at position positions[i] (device; or pos0 + i) sees the keys
// below (p / block + 1) * block (tiles no row of a query tile sees are skipped).
// key_hi non-null (device, per query; one key source): query i sees keys [key_lo[i], key_hi[i])
// instead (a batch's packed sequences); tiles outside every row's range of a query tile are skipped,
// and a warp skips the tiles its own rows do not see (a query tile may hold two sequences).
void flash_attention_split(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows,
                           const bf16* k2, const bf16* v2, int64_t kv_rows2, int heads, int kv_heads, int hd,
                           float scale, bf16* out, float* workspace, size_t workspace_bytes, cudaStream_t s,
                           int splits = 0, int64_t block = 0, const int32_t* positions = nullptr, int64_t pos0 = 0,
                           const int32_t* key_lo = nullptr, const int32_t* key_hi = nullptr, int64_t key_span = 0);

// The fp32 verification mode (f32_kernels.cu): the CPU kernels' math in fp32.
void gather_rows_f32(const int32_t* idx, int64_t rows, const float* src, int64_t d, float* out, cudaStream_t s);
void rms_norm_f32(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* y, cudaStream_t s);
void rope_f32(float* x, int64_t rows, int heads, int hd, int64_t pos0, const float* inv_freq,
              const int32_t* positions, cudaStream_t s, int rot = 0);
void swiglu_f32(float* g, const float* u, int64_t n, cudaStream_t s);
// Over the keys of (k, v, kv_rows), then those of (k2, v2, kv_rows2) when kv_rows2 > 0; with
// block > 0 block-causal (query i at position positions[i], or pos0 + i, sees keys below
// (p / block + 1) * block; keys never read past that).
void attention_f32(const float* q, int64_t rows, const float* k, const float* v, int64_t kv_rows, const float* k2,
                   const float* v2, int64_t kv_rows2, int heads, int kv_heads, int hd, float scale, float* out,
                   cudaStream_t s, int64_t block = 0, const int32_t* positions = nullptr, int64_t pos0 = 0);
// The same kernel on bf16 (fp32 math): keys in two places at head dims the tiled kernels lack,
// and block-causal attention (the tiled kernels have no mask yet).
void attention_plain_bf16(const bf16* q, int64_t rows, const bf16* k, const bf16* v, int64_t kv_rows, const bf16* k2,
                          const bf16* v2, int64_t kv_rows2, int heads, int kv_heads, int hd, float scale, bf16* out,
                          cudaStream_t s, int64_t block = 0, const int32_t* positions = nullptr, int64_t pos0 = 0);
// Mixture of experts (moe.cu): out[idx[i]] += w[i] * y[i] for rows of d (one expert's rows:
// idx holds no row twice).
void scatter_add_rows(const bf16* y, int64_t d, const int32_t* idx, const float* w, int64_t rows, bf16* out,
                      cudaStream_t s);
void scatter_add_rows_f32(const float* y, int64_t d, const int32_t* idx, const float* w, int64_t rows, float* out,
                          cudaStream_t s);
// x[i] += y[i] for n elements, y fp32 (an offloaded layer's CPU part, moe.cu).
void add_f32(const float* y, int64_t n, bf16* x, cudaStream_t s);
void add_f32(const float* y, int64_t n, float* x, cudaStream_t s);
// The router's choice on the device (moe_route.cu), the CPU's rule (cpu::moe_select): ids and
// weights [rows, top_k] from logits [rows, experts] and the bias (bf16, may be null).
bool moe_select_supported(const MoeRouting& r);
void moe_select(const float* logits, int64_t rows, const bf16* bias, const MoeRouting& r, int32_t* ids,
                float* weights, cudaStream_t s);
// The routed experts as grouped GEMMs (moe_grouped.cu): x[r] += sum_j weights[r, j] *
// down(silu(gate(h[r])) * up(h[r])) of expert ids[r, j]. tables: device array of 3 * experts
// pointers (every gate, then every up, then every down); workspace: moe_grouped_workspace_bytes;
// meta: 4 * (experts + 1) ints of device scratch.
constexpr int kMoeMaxExperts = 1024;
bool moe_grouped_supported(int64_t d, int64_t ffn, int experts);
size_t moe_grouped_workspace_bytes(int64_t rows, int64_t d, int64_t ffn, int top_k);
void moe_experts_grouped(const bf16* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights, int top_k,
                         int64_t ffn, int experts, const bf16* const* tables, bf16* x, void* workspace,
                         int32_t* meta, cudaStream_t s);

}  // namespace mosaic::cuda
