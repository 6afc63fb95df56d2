#pragma once
// The graph of one denoising step, built from reusable blocks (the "graph registrar"): the
// embedding, a family's layers (attention, a dense SwiGLU FFN, ...), and the mask-only head
// that projects and samples only the rows the sampler can commit. Shapes are symbolic in L
// (tokens) and M (head rows). A family (models/<family>.cpp) names its weights and calls the
// blocks; everything about rows, chunk regions and guidance lives here, once.
#include <compare>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "graph/graph.h"
#include "io/model_config.h"
#include "models/kv_cache.h"
#include "parallel/sequence_shards.h"

namespace mosaic {

struct GraphOptions {
  bool guided = false;       // classifier-free guidance: two trunks (prompt kept / prompt masked) and a guided head
  bool emit_logits = false;  // head writes logits [M, V] instead of sampling (tests, eval)
  bool fused_qkv = false;    // q/k/v are row slices of one fused tensor
  // The last layer's queries, attention output and FFN run on the head's M rows only (its
  // keys and values still see all L). Off: every layer runs all L rows (for comparisons, and
  // for runs of the first layers only, which stand in for middle layers).
  bool masked_last_layer = true;
  // A segment of the layers, [first_layer, end_layer) (-1: to the last). A segment that does
  // not start at layer 0 reads the hidden state "hidden" [L, d] from the host instead of
  // embedding tokens; one that stops early hands "hidden" back instead of running the head.
  // Lets a step too long for one sitting run in pieces (bench --segment).
  int first_layer = 0, end_layer = -1;
  int run_layers = -1;  // > 0: the model is cut to its first layers (bench --layers)
  // Cached decoding: with a mode, every layer (of every trunk) has a persistent key and value
  // cache of K rows; `cache_step` says what this step does with it. A Cached step runs L rows
  // at the positions "pos", writes their keys/values to the cache rows "cache_rows" and attends
  // to the whole cache. A sparse Store step also selects what the cache keeps (keep, kernel).
  CacheMode cache = CacheMode::None;
  CacheStep cache_step = CacheStep::Full;
  double sparse_keep = 0.0;
  int sparse_kernel = 0;
  // > 0: block-causal attention with blocks of this many positions from position 0 (LLaDA2.0's
  // generate(): bidirectional inside a block, causal across blocks).
  int64_t attention_block = 0;
  // Several sequences packed along L (Model::step_batch): every row's position is an input
  // ("pos", and "head_row_pos" for the head rows), and the executor runs attention and the head
  // per sequence (Executor's StepLayout).
  bool packed = false;
  // One rank's part of a step whose rows are sharded across `ranks` ranks (issue 17,
  // Model::set_shards): the graph runs this rank's L rows at the positions "pos" (K rows: the
  // whole sequence); the head samples this rank's M rows and does not rank them (the host ranks
  // every rank's rows together). Each layer's attention meets the other ranks by `exchange`:
  // AllGather: every rank's keys and values, K rows, for this rank's queries; AllToAll: every
  // rank's K rows of this rank's group of heads (queries, keys, values), the attention there,
  // and its output back to the ranks that hold the rows.
  bool sharded = false;
  parallel::Exchange exchange = parallel::Exchange::AllGather;
  int ranks = 0;
  BackendTraits traits = cpu_traits();

  // Every field takes part: a runner cached under one set of options is never reused for another.
  auto operator<=>(const GraphOptions&) const = default;
};

// Tensor names of one attention block. `fused_qkv` is used when GraphOptions::fused_qkv;
// empty biases mean none.
struct AttentionWeights {
  std::string norm, q, k, v, fused_qkv, out;
  std::string q_bias, k_bias, v_bias;
  std::string q_norm, k_norm;  // per-head RMSNorm weights [head_dim] (config qk_norm)
};
// Tensor names of one dense SwiGLU FFN block: x += down(silu(gate(h)) * up(h)), h = norm(x).
struct DenseFfnWeights {
  std::string norm, gate, up, down;
};
// Tensor names of one mixture-of-experts FFN block: h = norm(x); x += sum over the routed experts
// of weight * expert(h) + shared(h).
struct MoeFfnWeights {
  std::string norm, router, router_bias;  // router [experts, d]; router_bias [experts] when the config has one
  std::vector<std::string> gate, up, down;  // per routed expert
  std::string shared_gate, shared_up, shared_down;  // empty: no shared expert
  // Names gate/up/down of experts 0..n-1 as `{prefix}{e}.{gate,up,down}_proj.weight` (the
  // Hugging Face MoE layout both families use).
  void name_experts(const std::string& prefix, int64_t n);
};
// Floats of scratch per row of a MoE region: the larger of what the per-expert form (CPU, fp32)
// and the grouped form (CUDA bf16) need.
int64_t moe_workspace_floats(const io::ModelConfig& c);

struct ModelWeights {
  std::string embed, final_norm, lm_head;
};

class StepGraphBuilder {
 public:
  StepGraphBuilder(const io::ModelConfig& c, const GraphOptions& o);

  // One layer of the family, written with the blocks below; called once per layer and trunk.
  using LayerFn = std::function<void(StepGraphBuilder&, int layer)>;
  // embed -> layers -> final norm -> LM head on the M head rows -> sample and rank (or logits).
  Graph build(const ModelWeights& w, const LayerFn& layer);

  // --- blocks: each reads and updates the current hidden state x ------------------------
  // x += attention(norm(x)) with rotary q/k over all heads; keys and values over all L rows.
  // In the last layer of a masked step the queries run on the head rows only.
  void attention(int layer, const AttentionWeights& w);
  void dense_ffn(int layer, const DenseFfnWeights& w);
  void moe_ffn(int layer, const MoeFfnWeights& w);

  const io::ModelConfig& config() const { return c_; }

 private:
  int trunk(int tokens, const std::string& pfx, const LayerFn& layer, const std::string& embed);
  int gather_head_rows(int x, const std::string& pfx);
  int input(const std::string& name, SymDim rows);
  int output(const std::string& name, SymDim rows, SymDim cols, ElemType e);
  int act(const std::string& name, SymDim rows, int64_t cols);
  int local(const std::string& name, int region, int64_t cols, ElemType e = ElemType::Act);
  int weight(const std::string& name, int64_t rows, int64_t cols, int64_t row0 = 0, int64_t full_rows = -1);
  int vec_weight(const std::string& name, int64_t n);
  void node(Op op, std::vector<Operand> in, std::vector<Operand> out, float eps = 0.f);
  void matmul(int a, int w, int bias, int c);
  void residual_matmul(int a, int w, int x);
  void rope(int t, int heads, int positions = -1);
  void head_norm(int t, int heads, const std::string& weight);
  bool cached() const { return o_.cache != CacheMode::None && o_.cache_step == CacheStep::Cached; }
  // Rows at explicit positions: a cached step's, or a batch's.
  bool positioned() const { return cached() || o_.packed || o_.sharded; }
  bool stores_in_place() const {
    return (o_.cache == CacheMode::Prefix || o_.cache == CacheMode::Dual) && o_.cache_step == CacheStep::Store;
  }
  bool selects() const { return o_.cache == CacheMode::Sparse && o_.cache_step == CacheStep::Store; }
  // A sparse cache holds only the kept rows: a cached step attends to them and to the block's
  // fresh keys, which stay apart.
  bool attends_apart() const { return cached() && o_.cache == CacheMode::Sparse; }
  void select_cache(int layer, int attn_norm, int wq, int bq, const std::string& q_norm, int K, int V, int kc, int vc);
  void attention_by_heads(int layer, int q, int K, int V, int wo);
  bool exchanges_heads() const { return o_.sharded && o_.exchange == parallel::Exchange::AllToAll; }
  int64_t d() const { return c_.d_model; }
  int64_t qd() const { return c_.q_dim(); }
  int n_layers() const;

  const io::ModelConfig& c_;
  const GraphOptions& o_;
  Graph g_;
  int head_rows_ = -1;
  // Cached decoding's inputs (-1: not in this graph).
  int pos_ = -1, cache_rows_ = -1, head_row_pos_ = -1, block_rows_ = -1, outside_rows_ = -1;
  // A batch's per-query key ranges: for the L rows and for the head rows (-1: not a batch).
  int key_lo_ = -1, key_hi_ = -1, head_key_lo_ = -1, head_key_hi_ = -1;
  // The trunk being built: its name prefix, hidden state, and the rows its layers run on
  // (L, or M past the last layer's keys and values) with their positions (-1: 0..L-1).
  std::string pfx_;
  int x_ = -1;
  SymDim rows_;
  int positions_ = -1;
};

}  // namespace mosaic
