#pragma once
// A trained model's routing, replayed into a model of another shape: a benchmark's stand-in for a
// trained router where no trained checkpoint of that shape is at hand (LLaDA2.0-mini's shape on
// random weights routes far less stably than a trained model does, and the offload's speed
// depends on that stability).
//
// The record: every MoE layer's expert ids at every step of one generation of the trained model
// (the shipped MoE model), run with the same schedule (the same rows per step). The replay writes
// them over another model's routing, step for step: its MoE layer j takes the recorded layer
// j mod (recorded layers); row r of a step takes the recorded row r (mod the recorded rows); each
// recorded expert e of a row becomes `top_k / recorded top_k` experts among e's `experts /
// recorded experts` successors f*e .. f*e+f-1, picked by a hash of (layer, row, e). The same row
// keeps the same picks while its recorded routing stays, so the replay keeps the recording's
// step-to-step stability and its skew across experts, at the new expert count.
#include <cstdint>
#include <string>
#include <vector>

namespace mosaic::offload {

// What the executor hands a routing tap after every MoE routing node: the ids [rows, top_k] of
// `layer` for rows r0 .. r0+rows of this step, in host memory. A tap may rewrite them.
class RoutingTap {
 public:
  virtual ~RoutingTap() = default;
  virtual void begin_step() = 0;
  virtual void routed(int layer, int64_t r0, int64_t rows, int top_k, int32_t* ids) = 0;
  virtual bool rewrites() const = 0;
};

// Records a generation's routing.
class RoutingRecord : public RoutingTap {
 public:
  RoutingRecord(int experts, int top_k, std::vector<int> layers);
  void begin_step() override;
  void routed(int layer, int64_t r0, int64_t rows, int top_k, int32_t* ids) override;
  bool rewrites() const override { return false; }

  int experts() const { return experts_; }
  int top_k() const { return top_k_; }
  int layers() const { return static_cast<int>(layers_.size()); }
  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }
  // Step s, MoE layer j (by position among the recorded layers): ids [rows, top_k].
  const std::vector<int32_t>& ids(int64_t s, int j) const { return steps_.at(static_cast<size_t>(s)).at(static_cast<size_t>(j)); }

 private:
  int experts_, top_k_;
  std::vector<int> layers_;
  std::vector<std::vector<std::vector<int32_t>>> steps_;
};

// Replays a record into a model with `experts` routed experts per layer, `top_k` per row and the
// MoE layers `layers`; restart() before each generation.
class RoutingReplay : public RoutingTap {
 public:
  RoutingReplay(const RoutingRecord& record, int experts, int top_k, std::vector<int> layers);
  void restart() { step_ = -1; }
  void begin_step() override { ++step_; }
  void routed(int layer, int64_t r0, int64_t rows, int top_k, int32_t* ids) override;
  bool rewrites() const override { return true; }
  // One line for the user: what is replayed into what.
  std::string describe() const;

 private:
  const RoutingRecord& record_;
  int experts_, top_k_;
  std::vector<int> layers_;
  int64_t step_ = -1;
};

}  // namespace mosaic::offload
