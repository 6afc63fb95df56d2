#pragma once
// A loaded model: its family and config, its resident weights on a backend, and one step
// graph per set of graph options, each with its plan cache and executor. A step is a
// request: the sequence, the positions whose predictions the sampler wants, how to sample.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/executor.h"
#include "graph/graph.h"
#include "io/model_config.h"
#include "models/blocks.h"
#include "models/family.h"
#include "models/generation_plan.h"
#include "models/kv_cache.h"
#include "plan/memory_plan.h"

namespace mosaic {

namespace io {
class Checkpoint;
}
namespace offload {
class ExpertOffload;
class RoutingTap;
}
namespace parallel {
class Communicator;
}

// (bytes done, bytes total, tensor name) while weights load.
using LoadProgress = std::function<void(size_t, size_t, const std::string&)>;

struct StepStats {
  double ms = 0;
  int64_t rows = 0;  // the rows the step ran (L)
  size_t arena_bytes = 0, peak_live = 0, mapped_bytes = 0;
  double avg_live = 0;  // time-weighted (MemoryPlan::avg_live_timed)
  std::vector<int> chunks;
};

// What a step of a cached generation does with the key/value caches (models/kv_cache.h).
struct CacheRequest {
  CacheOptions options;  // mode None: no cache
  CacheStep step = CacheStep::Full;
  int64_t block_begin = 0, block_end = 0;  // the block being denoised
  int64_t run_begin = 0, run_end = 0;      // a Cached step's rows: the block, or (prefix) the block to the end
  // With block-causal attention (StepRequest::attention_block) a prefix cache is exact: a Cached
  // step runs rows [run_begin, block_end), writes their keys and values to the cache, and reads
  // rows before run_begin that earlier steps of the generation wrote.
};

// One denoising step. The graph it runs follows from the request (guidance, logits) and the
// model's settings (segment, masked last layer, layers run); each combination has its own
// cached graph.
struct StepRequest {
  const std::vector<int32_t>* tokens = nullptr;         // the sequence, [L]
  const std::vector<int32_t>* tokens_uncond = nullptr;  // non-null: guidance against this sequence
  std::vector<int32_t> head_pos;  // positions whose predictions are wanted (the mask-only head's M rows)
  SampleParams sample;
  bool emit_logits = false;  // the head returns logits [M, V] instead of tokens and confidences
  const std::vector<std::byte>* hidden_in = nullptr;  // a segment after the first: the hidden state [L, d]
  CacheRequest cache;
  // > 0: block-causal attention over blocks of this many positions (LLaDA2.0's generate()).
  int64_t attention_block = 0;
  // The sampler's step inside its block (0 starts one), for the expert offload's refreshes;
  // -1: not part of a generation (the offload then counts every step as a block's first).
  int step_in_block = -1;
  bool guided() const { return tokens_uncond != nullptr; }
};

struct StepOutputs {
  std::vector<int32_t> token;     // [M]: the token each head row would commit
  std::vector<float> conf;        // [M]: its confidence
  std::vector<int32_t> order;     // [M]: rows by confidence, most confident first (ties: lower row)
  std::vector<float> logits;      // [M, V], for requests that emit logits
  std::vector<std::byte> hidden;  // [L, d], from a segment that stops before the last layer
};

// One sequence of a batched step (Model::step_batch): its request, and an id that names its
// cache across the steps of a block.
struct BatchEntry {
  const StepRequest* request = nullptr;
  int64_t id = 0;
};

class Model {
 public:
  // `run_layers` > 0 runs steps through only the first layers (all weights still load):
  // lets a benchmark confirm the memory of a step whose full depth would take too long.
  // routed_experts_on_host: every MoE layer's routed experts load into host memory
  // (Backend::upload_weight_host) for an expert offload; set_offload then gives them GPU slots.
  // With it, run_layers > 0 loads only the layers run (without it every weight loads).
  Model(const std::string& dir, Backend& be, const LoadProgress& progress = {}, int run_layers = -1,
        bool routed_experts_on_host = false);
  ~Model();

  const io::ModelConfig& config() const { return config_; }
  const ModelFamily& family() const { return *family_; }
  const std::string& dir() const { return dir_; }
  Backend& backend() { return be_; }
  bool fused_qkv() const { return fused_qkv_; }

  // Bytes the arena may use; the chunk search fits every step under it.
  void set_activation_budget(size_t bytes) { budget_ = bytes; }
  size_t activation_budget() const { return budget_; }
  // Peak taming (plan/memory_plan.h): the floor on rows per chunk, and the peak/avg goal.
  void set_taming(int64_t min_rows, double target) {
    chunk_min_rows_ = min_rows;
    tame_target_ = target;
  }
  int64_t chunk_min_rows() const { return chunk_min_rows_; }
  double tame_target() const { return tame_target_; }

  // Off: the last layer runs all L rows like the others (for comparing the two paths).
  void set_masked_last_layer(bool on) { masked_last_layer_ = on; }
  // Run only layers [first, end) of each step (end -1: to the last); see GraphOptions. A
  // segment after the first needs StepRequest::hidden_in; one before the last returns
  // StepOutputs::hidden instead of tokens.
  void set_segment(int first, int end) { first_layer_ = first, end_layer_ = end; }
  // Non-null: steps add per-node wall times here (see Executor::set_op_times).
  void set_op_times(OpTimes* t) { op_times_ = t; }
  // Non-null: the routed experts run where this offload places them (offload/expert_offload.h);
  // the model does not own it. With the experts on the host, each MoE layer gets the offload's
  // GPU slots (Backend::alloc_weight, counted in the weights), filled with its first residents;
  // otherwise the offload only counts (its placement and statistics; every expert computes on
  // the device).
  void set_offload(offload::ExpertOffload* o);
  offload::ExpertOffload* offload() const { return offload_; }
  // Every step's MoE routing goes through `t` (nullptr: none): a benchmark records a trained
  // model's routing or replays it into this one (offload/routing_replay.h).
  void set_routing_tap(offload::RoutingTap* t) { routing_tap_ = t; }

  // Every step's rows sharded across ranks (issue 17: context parallelism): this model is rank
  // 0, peers[r - 1] rank r (the same model directory loaded on another backend, with the same
  // run_layers), comms[r] rank r's communicator in a group of peers.size() + 1 (one rank: the
  // sharded graph alone, for a 1-GPU NCCL run). A step then runs each rank's rows in a thread
  // of its own, exchanges what attention needs in every layer (`exchange`, resolved here:
  // parallel::resolve_exchange), and returns every rank's head rows as one step would (order
  // ranked on the host). The peers take this model's budget, taming and layer settings at each
  // step. No cache, batch, layer segment or expert offload.
  void set_shards(std::vector<Model*> peers, std::vector<parallel::Communicator*> comms,
                  parallel::Exchange exchange = parallel::Exchange::Auto);
  int ranks() const { return static_cast<int>(comms_.size()); }  // 0: not sharded
  parallel::Exchange exchange() const { return exchange_; }
  // A rank failed while running a step: the communicators were aborted, no step runs again.
  bool ranks_aborted() const { return ranks_aborted_; }

  // The graph options, graph and plan a request of this kind runs with.
  GraphOptions graph_options(const StepRequest& r) const;
  const Graph& graph(const StepRequest& r = {});
  const MemoryPlan& plan(const Dims& d, const StepRequest& r = {});
  // The dims a request runs with: L rows, M head rows, and with a cache its K and B. Sharded:
  // the longest shard's, with as many head rows as it can hold (the plan every rank fits in).

  Dims dims(const StepRequest& r) const;

  StepOutputs step(const StepRequest& r, StepStats* stats = nullptr);

  // Several sequences' steps in one pass (models/batch_step.cpp): their rows packed along L,
  // attention and sampling per sequence, so each sequence's outputs are those of its step
  // alone. Every request must want the same kind of step (guidance, cache mode and step,
  // block-causal blocks). With a cache, a Store step packs the sequences' caches in the order
  // given and a Cached step finds each by its id; sparse caches, layer segments and the exact
  // (block-causal) prefix cache run alone.
  std::vector<StepOutputs> step_batch(const std::vector<BatchEntry>& batch, StepStats* stats = nullptr);
  // Plans every kind of step a batch of these generations takes together (their rows packed)
  // under the activation budget; does not throw when it does not fit (plan.fits says).
  GenerationPlan check_batch(const CacheOptions& cache, const std::vector<GenerationShape>& shapes, bool guided);

  // Plans every kind of step a generation of this shape takes under the activation budget,
  // before it starts; throws OutOfBudget, naming the longest sequence that fits, when one
  // does not (a cache never runs out of memory mid-generation).
  GenerationPlan check_generation(const CacheOptions& cache, const GenerationShape& shape, bool guided);

 private:
  struct Runner {
    Graph graph;
    std::unique_ptr<Executor> exec;
    PlanCache plans;
  };
  Runner& runner(const GraphOptions& o);
  // The graph whose weights load (every layer, or with an offload and run_layers only those).
  GraphOptions load_options() const;
  void check_cache_request(const StepRequest& r, int64_t L) const;
  StepOutputs step_sharded(const StepRequest& r, StepStats* stats);  // models/sharded_step.cpp
  // A request's tokens and head positions against the model and its own sequence.
  void check_tokens(const StepRequest& r) const;
  void record_stats(StepStats* stats, std::chrono::steady_clock::time_point t0, const MemoryPlan& plan,
                    int64_t rows) const;

  std::string dir_;
  Backend& be_;
  io::ModelConfig config_;
  const ModelFamily* family_ = nullptr;
  std::unique_ptr<io::Checkpoint> ckpt_;
  bool fused_qkv_ = false;
  std::map<std::string, const void*> weights_;  // checkpoint name -> resident copy
  std::map<GraphOptions, std::unique_ptr<Runner>> runners_;
  size_t budget_ = SIZE_MAX;
  int64_t chunk_min_rows_ = kTameMinRows;
  double tame_target_ = kTameTarget;
  LoadProgress progress_;
  int run_layers_ = -1;
  bool masked_last_layer_ = true;
  OpTimes* op_times_ = nullptr;
  offload::ExpertOffload* offload_ = nullptr;
  offload::RoutingTap* routing_tap_ = nullptr;
  bool experts_on_host_ = false;
  ExpertCopies experts_;
  int first_layer_ = 0, end_layer_ = -1;
  std::vector<Model*> peers_;                    // set_shards: ranks 1..
  std::vector<parallel::Communicator*> comms_;  // every rank's, or none
  parallel::Exchange exchange_ = parallel::Exchange::AllGather;
  bool ranks_aborted_ = false;
  // What the arena's persistent prefix holds: the caches a Store step wrote, for which
  // generation shape and block; a Cached step must find its own there.
  struct CacheState {
    CacheMode mode = CacheMode::None;
    int64_t tokens = 0, block_begin = 0, block_end = 0, rows = 0;
    bool guided = false;
    bool operator==(const CacheState&) const = default;
  };
  CacheState cache_state_;
  // The exact (block-causal) prefix cache: its shape, and the rows [0, written_) steps wrote.
  CacheState exact_state_;
  int64_t written_ = 0;
  // The caches a batch's Store step packed: per sequence id, its keys' first row and shape.
  struct PackedCache {
    int64_t key0 = 0, tokens = 0, block_begin = 0, block_end = 0;
    bool operator==(const PackedCache&) const = default;
  };
  struct BatchCacheState {
    CacheMode mode = CacheMode::None;
    bool guided = false;
    int64_t rows = 0;  // every sequence's caches: K
    std::map<int64_t, PackedCache> sequences;
  };
  BatchCacheState batch_state_;
};

// Uploads the weights graph `g` names, once per checkpoint tensor, checking shapes and
// dtypes; returns per-tensor pointers for an Executor.
std::vector<const void*> bind_weights(const Graph& g, const io::Checkpoint& ck, Backend& be,
                                      std::map<std::string, const void*>& uploaded,
                                      const LoadProgress& progress = {},
                                      const std::set<std::string>* on_host = nullptr);
// Per MoE layer, the checkpoint names of its routed experts' weights (gate, up, down per expert).
std::map<int, std::vector<std::string>> routed_expert_names(const Graph& g);

}  // namespace mosaic
