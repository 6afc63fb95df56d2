#pragma once
// The kernels a model step needs, behind one interface. CPU is the reference and runs CI;
// CUDA is the product. All matrices are row-major; pointers live in the backend's memory
// (host memory for the CPU, device memory for CUDA).
#include <cstddef>
#include <cstdint>
#include <compare>
#include <memory>
#include <string>
#include <vector>

#include "graph/graph.h"
#include "sampling/sample_params.h"

namespace mosaic {

namespace io {
struct TensorInfo;
}

// Keys and values attention reads: k and v [rows, kv_heads*hd] each, in backend memory.
struct KvRows {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t rows = 0;
};

// Which keys each query may see. block > 0: block-causal (LLaDA2.0), a query at position p sees
// keys 0 .. (p / block + 1) * block - 1; query i's position is positions[i], or pos0 + i.
struct AttentionMask {
  int64_t block = 0;
  const int32_t* positions = nullptr;  // backend memory
  int64_t pos0 = 0;
  // A batch's packed sequences (backend memory, per query): query i sees keys [key_lo[i],
  // key_hi[i]) only (block-causal limits folded in; `block` is then 0). Only for a backend whose
  // attention_takes_key_ranges says so.
  const int32_t* key_lo = nullptr;
  const int32_t* key_hi = nullptr;
  int64_t key_span = 0;  // the longest range (keys), for sizing the work
};

// One MoE layer's routed experts under an expert offload (offload/): every expert's master copy in
// host memory, some of them also in GPU slots. moe_experts_offloaded first copies the experts in
// copy_in from host into their slots (and sends those in copy_behind after them), then runs the
// experts in on_gpu on the device and the others on the CPU (offload/cpu_experts.h) over the rows
// routed to them, and adds both to x.
struct OffloadedExperts {
  const int32_t* host_ids = nullptr;     // the routing read back: [rows, top_k] expert ids
  const float* host_weights = nullptr;   // and weights
  const std::vector<const void*>* host = nullptr;    // 3E: every expert's gate, up, down (host memory)
  const std::vector<const void*>* device = nullptr;  // 3E: a resident expert's slot weights; null for the rest
  const uint8_t* on_gpu = nullptr;                   // E: runs from its slot now (resident, not behind)
  // Experts promoted this step, to copy into their slots: copy_in before the device part (those
  // experts are in on_gpu), copy_behind behind it (those run on the CPU this time).
  const std::vector<int32_t>* copy_in = nullptr;
  const std::vector<int32_t>* copy_behind = nullptr;
  int layer = 0;
  // The layer's copies sent behind at an earlier step are read now: wait for them first.
  bool wait_landed = false;
  // Out: the wall time of the CPU part (its experts' compute; 0 when none ran).
  double* cpu_seconds = nullptr;
};

// What the planner must know about a backend without creating one (so `mosaic info
// --config` can plan a CUDA step on a laptop).
struct BackendTraits {
  std::string name;
  size_t act_size = 4;              // bytes per activation element
  int64_t attn_workspace_rows = 0;  // attention scratch: [rows, L] f32, 0 = none
  auto operator<=>(const BackendTraits&) const = default;
};

BackendTraits cpu_traits();
BackendTraits cuda_traits();
BackendTraits cuda_fp32_traits();
// Traits of a backend by name ("cpu", "cuda", "cuda-fp32"), without creating it.
BackendTraits traits_of(const std::string& backend);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const BackendTraits& traits() const = 0;

  // --- memory ---------------------------------------------------------------
  // Makes the arena at least `bytes` long (may move it), keeping its first `keep` bytes (the
  // persistent tensors of plan/). Called between steps only.
  virtual void reserve_arena(size_t bytes, size_t keep = 0) = 0;
  virtual std::byte* arena() = 0;
  virtual size_t arena_mapped_bytes() const = 0;
  // Copies a checkpoint tensor into resident weight memory in the backend's weight type.
  virtual const void* upload_weight(const io::TensorInfo& t) = 0;
  virtual size_t weight_bytes() const = 0;
  // An offloaded routed expert's master copy: the tensor in host memory the device copies from at
  // full speed (pinned), in the weight type. The CPU backend: upload_weight.
  virtual const void* upload_weight_host(const io::TensorInfo& t) { return upload_weight(t); }
  // Weight memory on the device for expert slots (counted in weight_bytes).
  virtual void* alloc_weight(size_t bytes) = 0;
  // Bytes upload_weight_host holds.
  virtual size_t host_weight_bytes() const { return 0; }
  // Measured: bytes per second from pinned host memory to the device (the CPU backend: memcpy).
  virtual double host_to_device_bytes_per_s() = 0;
  virtual size_t weight_elem_size() const = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Bytes the device could still give to the arena (for the default memory budget).
  virtual size_t free_memory() const = 0;
  // Peak bytes this process has held on the device (weights + arena + library scratch).
  virtual size_t peak_device_bytes() const = 0;
  // Makes this backend's device the calling thread's current one: a sharded step's ranks
  // (Model::set_shards) run in threads of their own.
  virtual void make_current() {}

  // --- kernels ---------------------------------------------------------------
  virtual void embed(const int32_t* ids, int64_t rows, const void* table, int64_t d, void* out) = 0;
  virtual void rms_norm(const void* x, int64_t rows, int64_t d, const void* w, float eps, void* y) = 0;
  // c[rows, n] = a[rows, k] * w[n, k]^T (+ bias[n]); c is F32 or the activation type.
  // accumulate: c += the product (a residual add fused into the product).
  virtual void matmul(const void* a, int64_t rows, int64_t k, const void* w, const void* bias, int64_t n,
                      void* c, ElemType c_type, bool accumulate) = 0;
  // Rotary embedding in place on the first `rot` dims of each of `heads` heads of size hd
  // (rotate-half over those dims, the rest unchanged); row i has position positions[i] (i32,
  // backend memory) when given, else pos0 + i.
  virtual void rope(void* x, int64_t rows, int heads, int hd, int rot, int64_t pos0, double theta,
                    const int32_t* positions) = 0;
  // Whether attention() takes per-query key ranges (AttentionMask::key_lo/hi) at this head dim:
  // a batch then runs one call for all its sequences instead of one per sequence.
  virtual bool attention_takes_key_ranges(int /*head_dim*/) const { return false; }
  // Bidirectional attention of `rows` queries over the keys of kv, then those of more (rows 0:
  // none; a sparse cache's kept rows and the block's fresh ones, which live apart); GQA when
  // kv_heads < heads. workspace: [attn_workspace_rows, kv.rows + more.rows] floats, if any.
  virtual void attention(const void* q, int64_t rows, KvRows kv, KvRows more, int heads, int kv_heads, int hd,
                         float scale, void* out, void* workspace, const AttentionMask& mask = {}) = 0;
  virtual void swiglu(void* g, const void* u, int64_t n) = 0;
  virtual void gather_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) = 0;
  // out[idx[i]] = x[i] for i < rows (rows of d activations): fresh keys and values into a cache.
  virtual void scatter_rows(const void* x, int64_t d, const int32_t* idx, int64_t rows, void* out) = 0;
  // `rows` rows of `width` bytes from src (rows src_pitch bytes apart) to dst (dst_pitch apart):
  // a group of heads' columns into a packed block and back (the all-to-all exchange).
  virtual void copy_columns(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                            int64_t rows) = 0;
  // Sparse-dLLM's cache eviction for one layer. q_block [block_rows, heads*hd] are the block's
  // queries (after rope), k and v [*, kv_heads*hd] every row's keys and values; outside[0..n)
  // the rows outside the block, in order. Per outside row j: score_j = mean over heads h of
  // qbar_h . k[outside[j]] (kv head h / (heads / kv_heads)), qbar_h the mean of the block's
  // queries of head h; no softmax, no scale. The scores are max-pooled along j (width
  // `kernel`, odd, stride 1, padding with -inf), and the `keep` rows of highest pooled score
  // (ties: lower j) are copied, in order of j, to k_cache / v_cache rows 0..keep-1.
  // scores: n + heads*hd floats of scratch; kept: n ints of scratch (both backend memory).
  virtual void cache_select(const void* q_block, int64_t block_rows, const void* k, const void* v,
                            const int32_t* outside, int64_t n, int heads, int kv_heads, int hd, int kernel,
                            int64_t keep, float* scores, int32_t* kept, void* k_cache, void* v_cache) = 0;
  // Mixture of experts. moe_route: each row's top_k experts (ids, in the router's order) and
  // their weights, from h [rows, d] and the router's gate [experts, d] (+ bias [experts], may be
  // null); logits: rows x experts floats of scratch. moe_experts: x[r] += sum_j weights[r, j] *
  // down(silu(gate(h[r])) * up(h[r])) of expert ids[r, j]; expert e's weights are
  // experts[3e .. 3e+2] (gate and up [ffn, d], down [d, ffn]); workspace: rows x (2d + 2ffn +
  // 2 top_k) floats of scratch. only (host memory, one byte per expert; null: all): run only
  // the experts marked, the rest add nothing (an offloaded layer runs its experts in two parts).
  virtual void moe_route(const void* h, int64_t rows, int64_t d, const void* gate, const void* bias,
                         const MoeRouting& r, int32_t* ids, float* weights, float* logits) = 0;
  virtual void moe_experts(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights,
                           int top_k, int64_t ffn, const std::vector<const void*>& experts, void* x,
                           void* workspace, const uint8_t* only = nullptr) = 0;
  virtual void moe_experts_offloaded(const void* h, int64_t rows, int64_t d, const int32_t* ids, const float* weights,
                                     int top_k, int64_t ffn, const OffloadedExperts& o, void* x, void* workspace) = 0;
  virtual void cfg_combine(float* cond, const float* uncond, int64_t n, float scale) = 0;
  // Per row: the token to commit (argmax, or gumbel-max with temperature, noise from the
  // counter source at (seed, step, pos[i], column)) and its confidence.
  virtual void sample_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* pos,
                           const SampleParams& p, int32_t* token, float* conf) = 0;
  // order[i] = index of the i-th most confident row; equal confidences: lower index first.
  virtual void rank_rows(const float* conf, int64_t n, int32_t* order) = 0;
  // The same for each range of rows apart (a batch's sequences): order[first + i] = index, within
  // the range, of its i-th most confident row. A backend may rank all ranges in one call.
  struct RowRange {
    int64_t first, count;
  };
  virtual void rank_rows_in_ranges(const float* conf, const std::vector<RowRange>& ranges, int32_t* order) {
    for (const RowRange& r : ranges)
      if (r.count > 0) rank_rows(conf + r.first, r.count, order + r.first);
  }
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws a clear error when mosaic was built without CUDA or no GPU is usable. fp32: the
// verification mode (fp32 weights and math; slow; for matching the CPU and the goldens).
std::unique_ptr<Backend> make_cuda_backend(int device = 0, bool fp32 = false);
// "cpu" | "cuda" | "cuda-fp32"; device: the GPU the cuda ones run on.
std::unique_ptr<Backend> make_backend(const std::string& name, int device = 0);
// CUDA devices this process can use (0 without CUDA).
int cuda_device_count();

// LLaDA's and Qwen2's inverse frequencies, computed as torch does in float32, once, on the
// host, so that every backend rotates by the same angles.
std::vector<float> rope_inv_freq(double theta, int hd);

}  // namespace mosaic
