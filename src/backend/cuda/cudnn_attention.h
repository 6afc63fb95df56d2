#pragma once
// bf16 scaled-dot-product attention forward through cuDNN's fused flash-attention engines,
// built with cuDNN's C backend API (no cudnn-frontend). Inference only: no mask, no causal,
// no dropout, no bias, no softmax stats.
//
//   out[r, h*hd + j] = sum_t softmax_t(scale * q_h[r] . k_g[t]) v_g[t, j],   g = h / (heads / kv_heads)
//
// q: [rows, heads*hd], k and v: [kv_rows, kv_heads*hd], out: [rows, heads*hd], all bf16,
// row-major, batch 1, 16-byte aligned. GQA when kv_heads < heads (heads % kv_heads == 0).
//
// Two descriptor graphs can express this (docs/notes/cudnn_attention.md has the details):
//   unified   one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (cuDNN >= 9.13.1; what the
//             frontend's AUTO picks there)
//   composite matmul -> scale -> max/sub/exp/sum/log/add/div softmax -> matmul, the pattern
//             the runtime-fusion flash-attention engines recognise (every cuDNN 9)
// Graph::Auto tries unified where the runtime has it, then composite. MOSAIC_CUDNN_SDPA=
// unified|composite|auto overrides Auto; MOSAIC_CUDNN_VERBOSE=1 prints every plan build.
//
// Not thread-safe: one instance per stream / thread. Tested on H100 with cuDNN 9.14.0 (both graphs,
// ~660 TFLOP/s at 4096x4096x32x128): docs/notes/cudnn_attention.md.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

struct cudnnContext;  // cudnnHandle_t is cudnnContext*; keeps cudnn.h out of this header

namespace mosaic::cuda {

class CudnnAttention {
 public:
  enum class Graph { Auto, Unified, Composite };

  // Creates the cuDNN handle and binds it to `stream`. Throws mosaic::Error without a GPU.
  explicit CudnnAttention(cudaStream_t stream, Graph graph = Graph::Auto);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Runs attention on the stream; builds and caches an execution plan per (rows, kv_rows, heads,
  // kv_heads, hd, scale). Returns false (and remembers it for that shape, so later calls return
  // false at once) if cuDNN has no engine for the shape; throws mosaic::Error (with the cuDNN status
  // name and which descriptor/attribute) on real errors, on invalid arguments (heads % kv_heads != 0,
  // null or misaligned pointers) and when workspace_bytes is less than the plan needs.
  // The scale is a by-value (host) scalar of the graph: no device memory needed for it.
  bool run(const void* q, int64_t rows, const void* k, const void* v, int64_t kv_rows, int heads, int kv_heads,
           int hd, float scale, void* out, void* workspace, size_t workspace_bytes);

  // Workspace the plan for this shape needs (builds the plan if necessary); SIZE_MAX if unsupported.
  size_t workspace_bytes(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale);

  // One line on the plan for this shape (builds it if necessary): graph, engine, heuristic mode,
  // workspace, build time; or why the shape is unsupported. For tests and logs.
  std::string describe(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale);
  // Every step the plan build for this shape tried (graphs, heuristic modes, configs, statuses).
  std::string build_log(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale);

  // The cuDNN library loaded at run time, e.g. "9.13.0".
  static std::string version();
  // Whether this build and the loaded library can express the unified SDPA_FWD graph.
  static bool unified_available();

  struct Plan;  // defined in cudnn_attention.cpp

 private:
  using Key = std::tuple<int64_t, int64_t, int, int, int, uint32_t>;
  Plan& plan(int64_t rows, int64_t kv_rows, int heads, int kv_heads, int hd, float scale);

  cudaStream_t stream_;
  cudnnContext* handle_ = nullptr;
  Graph graph_;
  bool verbose_ = false;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mosaic::cuda
