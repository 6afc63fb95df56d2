#pragma once
// Runs a graph on a backend at the offsets of a memory plan, region by region and chunk
// by chunk. It allocates nothing: inputs are copied into their planned slots, outputs
// read back from theirs.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "graph/graph.h"
#include "plan/memory_plan.h"

namespace mosaic {
namespace offload {
class ExpertOffload;
class RoutingTap;
}
namespace parallel {
class Communicator;
}

// A step's host-side data, bound to graph tensors by name: the executor knows no tensor by
// name, it copies every bound input into its planned slot and reads every output back.
struct HostInput {
  const void* data = nullptr;
  size_t bytes = 0;
  template <typename T>
  static HostInput of(const std::vector<T>& v) {
    return {v.data(), v.size() * sizeof(T)};
  }
};
using InputBindings = std::map<std::string, HostInput>;

// Several sequences packed into one step (a batch). Each owns a contiguous range of the step's
// L rows, of its M head rows and of the keys attention reads (the step's fresh rows, or the
// cache), and samples with its own parameters. Attention runs per sequence over its own keys;
// the head samples, guides and ranks each sequence's rows apart (its order counts from its
// own first head row), so every sequence sees the step it would have taken alone.
struct PackedSequence {
  int64_t row0 = 0, rows = 0;    // in L
  int64_t head0 = 0, heads = 0;  // in M
  int64_t key0 = 0, keys = 0;    // in the keys attention reads
  SampleParams sample;
};
using StepLayout = std::vector<PackedSequence>;

// Every Output and InOut tensor of a step, by name, as the bytes the plan gave it.
struct OutputBuffers {
  std::map<std::string, std::vector<std::byte>> bytes;
  bool has(const std::string& name) const { return bytes.count(name) != 0; }
  // The named output as elements of T; throws when the step did not produce it.
  template <typename T>
  std::vector<T> as(const std::string& name) const {
    const std::vector<std::byte>& b = at(name);
    std::vector<T> v(b.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
    return v;
  }
  const std::vector<std::byte>& at(const std::string& name) const;
};

// An offloaded model's routed experts, per MoE layer: every expert's host copies (gate, up, down
// per expert) and the GPU slots (gate, up, down per slot).
struct ExpertCopies {
  std::map<int, std::vector<const void*>> host;
  std::map<int, std::vector<void*>> slots;
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
  // Throws when an input the plan reads is not bound, or a binding's size is not the plan's.
  // With a layout the step is a batch: `sp` is unused, each sequence samples with its own.
  void run(const MemoryPlan& plan, const InputBindings& in, const SampleParams& sp, OutputBuffers* out,
           const StepLayout* layout = nullptr);
  // Non-null: the following steps add their per-node times here (each node then waits for
  // the device: slower steps, for finding where time goes, not for timing the step).
  void set_op_times(OpTimes* t) { op_times_ = t; }
  // Non-null: MoE layers report their routing to it (placement, statistics); with `copies`, they
  // also run where it places them: its slots on the device, the rest on the CPU.
  void set_offload(offload::ExpertOffload* o, const ExpertCopies* copies) {
    offload_ = o;
    copies_ = copies;
  }
  // Non-null: every MoE routing's expert ids go to it, and come back from it when it rewrites
  // them (a benchmark's recorded or replayed routing, offload/routing_replay.h).
  void set_routing_tap(offload::RoutingTap* t) { routing_tap_ = t; }
  // A sharded step's rank (GraphOptions::sharded): its AllGatherRows, RowsToHeads and HeadsToRows
  // nodes exchange rows with the other ranks through `c`.
  void set_communicator(parallel::Communicator* c) { comm_ = c; }

 private:
  struct View {
    void* p;
    int64_t rows, cols;
  };
  View view(const Operand& o, const MemoryPlan& plan, int64_t r0, int64_t n_rows) const;
  void exec(const Node& n, const MemoryPlan& plan, int64_t r0, int64_t n_rows, const SampleParams& sp);
  void exchange_heads(const Node& n, View x, View y, View staging, size_t act_size);
  // A batch's per-sequence nodes: attention over each sequence's keys, and the head's sampling,
  // guidance and ranking with each sequence's parameters.
  void exec_packed(const Node& n, const MemoryPlan& plan, int64_t r0, int64_t n_rows);
  void trace(int node, const MemoryPlan& plan, int64_t r0, int64_t rows);
  void timed_exec(int node, const MemoryPlan& plan, int64_t r0, int64_t rows, const SampleParams& sp);

  Backend& be_;
  const Graph& g_;
  std::vector<const void*> weights_;
  bool trace_ = false;
  OpTimes* op_times_ = nullptr;
  offload::ExpertOffload* offload_ = nullptr;
  const ExpertCopies* copies_ = nullptr;
  offload::RoutingTap* routing_tap_ = nullptr;
  parallel::Communicator* comm_ = nullptr;
  const StepLayout* layout_ = nullptr;  // the batch being run, or none
  bool per_sequence_attention_ = false;
  std::vector<int32_t> host_ids_, copy_in_, copy_behind_, tap_ids_;
  std::vector<float> host_weights_;
  std::vector<uint8_t> on_gpu_;
  std::vector<const void*> device_;
};


}  // namespace mosaic
