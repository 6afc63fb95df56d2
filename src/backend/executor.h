#pragma once
// Runs a graph on a backend at the offsets of a memory plan, region by region and chunk
// by chunk. It allocates nothing: inputs are copied into their planned slots, outputs
// read back from theirs.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "graph/graph.h"
#include "plan/memory_plan.h"

namespace mosaic {

// Host-side data for the graph's inputs, by the names the model builders give them.
struct StepInputs {
  const std::vector<int32_t>* tokens = nullptr;         // "tokens" [L]
  const std::vector<int32_t>* tokens_uncond = nullptr;  // "tokens_uncond" [L], guidance only
  const std::vector<int32_t>* head_rows = nullptr;      // "head_rows" [M]: hidden rows to project
  const std::vector<int32_t>* head_pos = nullptr;       // "head_pos" [M]: positions (noise counters)
  const std::vector<std::byte>* hidden = nullptr;       // "hidden" [L, d] (activation type), segments only
};

struct StepOutputs {
  std::vector<int32_t> token;  // "token" [M]
  std::vector<float> conf;     // "conf" [M]
  std::vector<int32_t> order;  // "order" [M]: rows by confidence, most confident first
  std::vector<float> logits;   // "logits" [M, V], only for graphs built to emit them
  std::vector<std::byte> hidden;  // "hidden" [L, d], from a segment that stops before the last layer
};

// Where a step's time goes: wall time per kind of node (region kind, op, and for products
// which tensor they make), measured by synchronizing around every node.
struct OpTime {
  int64_t calls = 0;
  double ms = 0, flops = 0;
};
using OpTimes = std::map<std::string, OpTime>;

class Executor {
 public:
  // weights[t] is the resident pointer of Weight tensor t (nullptr for other tensors).
  Executor(Backend& be, const Graph& g, std::vector<const void*> weights);
  void run(const MemoryPlan& plan, const StepInputs& in, const SampleParams& sp, StepOutputs* out);
  // Non-null: the following steps add their per-node times here (each node then waits for
  // the device: slower steps, for finding where time goes, not for timing the step).
  void set_op_times(OpTimes* t) { op_times_ = t; }

 private:
  struct View {
    void* p;
    int64_t rows, cols;
  };
  View view(const Operand& o, const MemoryPlan& plan, int64_t r0, int64_t n_rows) const;
  void exec(const Node& n, const MemoryPlan& plan, int64_t r0, int64_t n_rows, const SampleParams& sp);
  void trace(int node, const MemoryPlan& plan, int64_t r0, int64_t rows);
  void timed_exec(int node, const MemoryPlan& plan, int64_t r0, int64_t rows, const SampleParams& sp);
  void upload_input(int t, const std::vector<int32_t>* data, const MemoryPlan& plan, const char* name);

  Backend& be_;
  const Graph& g_;
  std::vector<const void*> weights_;
  int t_tokens_ = -1, t_tokens_uncond_ = -1, t_head_rows_ = -1, t_head_pos_ = -1;
  bool trace_ = false;
  OpTimes* op_times_ = nullptr;
  int t_token_ = -1, t_conf_ = -1, t_logits_ = -1, t_order_ = -1, t_hidden_ = -1;
};

int find_tensor(const Graph& g, const std::string& name);  // -1 if absent

}  // namespace mosaic
