#pragma once
// A loaded model: its config, its resident weights on a backend, and one step graph per
// variant (plain, guided, logits-emitting) with its plan cache and executor.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/executor.h"
#include "graph/graph.h"
#include "io/model_config.h"
#include "models/step_graph.h"
#include "plan/memory_plan.h"

namespace mosaic {

namespace io {
class Checkpoint;
}

// (bytes done, bytes total, tensor name) while weights load.
using LoadProgress = std::function<void(size_t, size_t, const std::string&)>;

struct StepStats {
  double ms = 0;
  size_t arena_bytes = 0, peak_live = 0, mapped_bytes = 0;
  double avg_live = 0;  // time-weighted (MemoryPlan::avg_live_timed)
  std::vector<int> chunks;
};

class Model {
 public:
  // `run_layers` > 0 runs steps through only the first layers (all weights still load):
  // lets a benchmark confirm the memory of a step whose full depth would take too long.
  Model(const std::string& dir, Backend& be, const LoadProgress& progress = {}, int run_layers = -1);
  ~Model();

  const io::ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  Backend& backend() { return be_; }
  bool fused_qkv() const { return fused_qkv_; }

  // The hidden row whose logits predict position `pos` (Dream shifts by one).
  int32_t head_row(int64_t pos) const;

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
  // Set before the first step.
  void set_masked_last_layer(bool on) { masked_last_layer_ = on; }
  // Run only layers [first, end) of each step (end -1: to the last); see GraphOptions. A
  // segment after the first needs set_hidden_in; one before the last returns
  // StepOutputs::hidden instead of tokens. Set before the first step.
  void set_segment(int first, int end) { first_layer_ = first, end_layer_ = end; }
  void set_hidden_in(const std::vector<std::byte>* h) { hidden_in_ = h; }
  // Non-null: steps add per-node wall times here (see Executor::set_op_times).
  void set_op_times(OpTimes* t) { op_times_ = t; }

  GraphOptions graph_options(bool cfg, bool emit_logits) const;
  const Graph& graph(bool cfg, bool emit_logits);
  const MemoryPlan& plan(const Dims& d, bool cfg, bool emit_logits);

  // One forward pass + per-row sampling for the head positions `pos` (sorted).
  // `uncond` non-null runs classifier-free guidance with p.cfg_scale.
  StepOutputs step(const std::vector<int32_t>& tokens, const std::vector<int32_t>* uncond,
                   const std::vector<int32_t>& pos, const SampleParams& p, bool emit_logits = false,
                   StepStats* stats = nullptr);

 private:
  struct Runner {
    Graph graph;
    std::unique_ptr<Executor> exec;
    PlanCache plans;
  };
  Runner& runner(bool cfg, bool emit_logits);

  std::string dir_;
  Backend& be_;
  io::ModelConfig config_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  bool fused_qkv_ = false;
  std::map<std::string, const void*> weights_;  // checkpoint name -> resident copy
  std::map<std::pair<bool, bool>, std::unique_ptr<Runner>> runners_;
  size_t budget_ = SIZE_MAX;
  int64_t chunk_min_rows_ = kTameMinRows;
  double tame_target_ = kTameTarget;
  LoadProgress progress_;
  int run_layers_ = -1;
  bool masked_last_layer_ = true;
  OpTimes* op_times_ = nullptr;
  int first_layer_ = 0, end_layer_ = -1;
  const std::vector<std::byte>* hidden_in_ = nullptr;
};


// Uploads the weights graph `g` names, once per checkpoint tensor, checking shapes and
// dtypes; returns per-tensor pointers for an Executor.
std::vector<const void*> bind_weights(const Graph& g, const io::Checkpoint& ck, Backend& be,
                                      std::map<std::string, const void*>& uploaded,
                                      const LoadProgress& progress = {});

}  // namespace mosaic
