#pragma once
// The model as data: tensors with symbolic shapes, nodes in execution order, and regions
// (runs of nodes that may be executed in row chunks). A model is a function
// `config -> Graph`; the planner and the executor only ever look at this structure.
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "graph/sym_dim.h"

namespace mosaic {

enum class TensorKind : uint8_t {
  Input,       // written by the host before a step (token ids, row indices)
  Weight,      // bound to a checkpoint tensor; lives outside the arena
  Activation,  // planned in the arena
  Output,      // planned in the arena; read back by the host after the step
  InOut,       // both: a hidden state handed from one segment of a step's layers to the next
  // Lives across steps, owned by a sequence (a KV cache): planned in the arena for the whole
  // step, at the arena's start in declaration order, so its offset and contents survive from
  // one step's plan to the next (its shape may depend only on K, which a generation fixes).
  // Neither uploaded nor read back.
  Persistent,
};

// Element type of planned tensors. `Act` is the backend's activation type (F32 on the CPU,
// BF16 on CUDA); the others are fixed.
enum class ElemType : uint8_t { Act, F32, I32 };

struct TensorDesc {
  std::string name;
  TensorKind kind = TensorKind::Activation;
  ElemType elem = ElemType::Act;
  SymDim rows, cols;
  // >= 0: a region-local tensor. Its rows are the region's chunk rows, not `rows`, and it
  // lives only while its region runs.
  int region = -1;
  std::string weight;  // checkpoint tensor name, for Weight tensors
  // A weight may be a row slice of a checkpoint tensor (q/k/v inside a fused att_proj):
  // rows [weight_row0, weight_row0 + rows) of a tensor shaped [weight_full_rows, cols].
  int64_t weight_row0 = 0;
  int64_t weight_full_rows = -1;  // -1: the tensor is exactly [rows, cols]
  bool weight_is_vector = false;  // a 1-D checkpoint tensor [cols] (norm weights, biases)
};

enum class Op : uint8_t {
  Embed,       // in: ids[rows], table(W)             out: x[rows, d]
  RmsNorm,     // in: x, weight(W)                     out: y (may alias x); heads > 0: per head of head_dim
  MatMul,      // in: a[rows, k], w(W)[n, k], bias(W)? out: c[rows, n] = a w^T + bias (+= if accumulate)
  Rope,        // inout: x[rows, heads*hd]; in: pos[rows] (i32)?  positions = pos, else region row offset + i;
               // the first rotary_dim of each head's hd rotate
  // in: q[rows, H*hd], k[n, Hkv*hd] (whole), v (whole), then k2, v2 (whole)?: keys in a second
  // place (a sparse cache's block), then pos[rows] (i32)? when block > 0: the queries' positions
  // (else the region row offset + i); out: o, workspace (whole)?
  Attention,
  SwiGlu,      // inout: g; in: u            g = silu(g) * u
  GatherRows,  // in: x[L, d] (whole), idx[rows] (i32)   out: y[rows, d] = x[idx]
  SampleRows,  // in: logits[rows, V] (f32), pos[rows] (i32)  out: token[rows] (i32), conf[rows] (f32)
  CfgCombine,  // inout: cond logits; in: uncond logits    cond = un + (s+1)(cond - un)
  RankRows,    // in: conf[M] (whole)  out: order[M] (whole) i32: indices by confidence, ties lower first
  ScatterRows,  // in: x[rows, d], idx[rows] (i32)   out: y (whole): y[idx[i]] = x[i]
  // Sparse-dLLM's cache eviction: in: q_block[B, H*hd] (whole), k[L, Hkv*hd] (whole), v (whole),
  // outside[n] (i32: the rows outside the block, in order); out: k_cache (whole), v_cache (whole),
  // scores[n + H*hd] (f32 scratch), kept[n] (i32 scratch). Keeps int(n * keep) rows (see Backend).
  CacheSelect,
  // Mixture-of-experts routing: in: h[rows, d], gate(W)[E, d], expert_bias(W)[E]?  out: ids[rows, k]
  // (i32), weights[rows, k] (f32), logits[rows, E] (f32 scratch). `router` picks the rule.
  MoeRoute,
  // x += sum_j weights[:, j] * expert_{ids[:, j]}(h): in: h[rows, d], ids, weights, then each expert's
  // gate(W), up(W), down(W) in expert order; inout: x; out: workspace[rows, ...] (f32 scratch).
  MoeExperts,
  // A sharded step's exchanges (issue 17), rank r's rows of n at parallel::shard_rows(n, ranks)[r]:
  // in: x[rows, d] (whole): this rank's rows; out: y[n, d] (whole): every rank's rows in rank order.
  AllGatherRows,
  // The all-to-all (Ulysses), heads/kv_heads/head_dim the model's: in: x[rows, h*hd] (whole), this
  // rank's rows of all h heads (h: heads, or kv_heads); out: y[n, g*hd] (whole), every rank's rows
  // of this rank's group of g heads (parallel::shard_heads), and staging[rows, ranks*g*hd] (scratch).
  RowsToHeads,
  // Its inverse, for the attention's output: in: x[n, g*hd] (whole), this rank's group of query
  // heads; out: y[rows, heads*hd] (whole), this rank's rows of every head, and staging (scratch).
  HeadsToRows,
};

// How a router turns its logits into experts and weights.
enum class Router : uint8_t {
  // LLaDA2.0 (DeepSeek-V3 style): sigmoid scores; the choice on scores + expert_bias, within the
  // top_groups groups of experts (a group scored by the sum of its two best); weights = the chosen
  // scores, normalised (k > 1), x routed_scale.
  SigmoidGroups,
  // OLMoE style (LLaDA-MoE): softmax over all experts (+ expert_bias); the top k probabilities are
  // the weights, normalised only when `renormalize`, x routed_scale.
  Softmax,
};

struct MoeRouting {
  Router router = Router::SigmoidGroups;
  int experts = 0, top_k = 0, groups = 1, top_groups = 1;
  bool renormalize = true;
  float routed_scale = 1.0f;
  auto operator<=>(const MoeRouting&) const = default;
};

const char* op_name(Op op);

struct Operand {
  int tensor = -1;
  // A full-size tensor used inside a chunked region is normally seen as the chunk's row
  // slice; `whole` passes all of it (attention's keys and values, gather sources).
  bool whole = false;
};

struct Node {
  Op op;
  std::vector<Operand> in;
  std::vector<Operand> out;  // an operand in both lists is updated in place
  int region = -1;
  int layer = -1;
  // MatMul: add the product to the output instead of overwriting it (a residual add fused
  // into the product's epilogue: no separate add, no [rows, n] temporary).
  bool accumulate = false;
  float eps = 0.f;    // RmsNorm
  float scale = 0.f;  // Attention: softmax scale
  int heads = 0, kv_heads = 0, head_dim = 0;
  double theta = 0.0;  // Rope
  double keep = 0.0;   // CacheSelect: the fraction of rows kept
  int kernel = 0;      // CacheSelect: max-pool width
  int rotary_dim = 0;  // Rope: the rotated dims of each head (0: all of head_dim)
  // Attention: > 0 makes it block-causal: a query at position p sees keys 0 .. (p / block + 1) * block - 1
  // (LLaDA2.0's generate()); the keys are positions 0, 1, ... in order.
  int64_t block = 0;
  bool has_positions = false;  // Attention with block > 0: its last input holds the queries' positions
  // Attention in a batch (GraphOptions::packed): two more inputs, after the positions, hold each
  // query's keys [lo, hi) (its own sequence's, block-causal limits included).
  bool has_key_ranges = false;
  // Attention: the inputs that hold keys and values (2, or 4 with a second source).
  size_t kv_inputs() const { return in.size() - 1 - (has_positions ? 1 : 0) - (has_key_ranges ? 2 : 0); }
  MoeRouting moe;  // MoeRoute / MoeExperts
  std::string label;
};

struct Region {
  std::string name;
  SymDim rows;             // the row dimension its chunks split
  bool chunkable = false;  // false: always one chunk
  int first = 0, last = -1;  // node index range, inclusive
  // How much slower a chunk makes the region, relative: lets the chunk search prefer cheap
  // splits (many small GEMMs cost more than few large ones).
  double chunk_cost = 1.0;
};

struct Graph {
  std::vector<TensorDesc> tensors;
  std::vector<Node> nodes;
  std::vector<Region> regions;

  int add_tensor(TensorDesc t);
  int add_node(Node n);  // assigns n.region to the currently open region
  int begin_region(Region r);
  void end_region();
  int open_region = -1;

  // Checks structural invariants: operands in range, every node in a region, region-local
  // tensors used only inside their region, inputs defined before use.
  void validate() const;
  // A plan gives each region its rows per chunk; 0 (or the region's rows, or more) is one chunk.
  // Chunks run in order, each `chunk_rows` rows, the last one what remains.
  int64_t chunk_rows(int region, const Dims& d, int64_t planned) const;
  int64_t chunk_count(int region, const Dims& d, int64_t planned) const;
  // Rows per chunk that split each region into `counts[r]` chunks of equal size (the last smaller).
  std::vector<int64_t> rows_for_counts(const Dims& d, const std::vector<int>& counts) const;
  // Row count of a tensor as the planner sizes it, given each region's rows per chunk.
  int64_t rows_of(int tensor, const Dims& d, const std::vector<int64_t>& chunk_rows) const;
};

size_t elem_size(ElemType e, size_t act_size);

// A region's name without its layer ("layer7.ffn" -> "ffn"): repeated layers report once.
std::string region_kind(const std::string& region_name);

}  // namespace mosaic
