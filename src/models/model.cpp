#include "models/model.h"

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/step_graph.h"
#include "models/weight_names.h"

namespace mosaic {

std::vector<const void*> bind_weights(const Graph& g, const io::Checkpoint& ck, Backend& be,
                                      std::map<std::string, const void*>& uploaded, const LoadProgress& progress) {
  // Check every shape before moving a byte: a wrong checkpoint should fail in
  // milliseconds, not after gigabytes were copied.
  std::vector<const io::TensorInfo*> info(g.tensors.size(), nullptr);
  size_t total = 0;
  std::map<std::string, bool> counted;
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const TensorDesc& td = g.tensors[t];
    if (td.kind != TensorKind::Weight) continue;
    std::vector<int64_t> shape;
    if (td.weight_is_vector)
      shape = {td.cols.c};
    else
      shape = {td.weight_full_rows >= 0 ? td.weight_full_rows : td.rows.c, td.cols.c};
    const io::TensorInfo& ti = ck.get(td.weight, &shape);
    MOSAIC_CHECK(ti.dtype == DType::BF16 || ti.dtype == DType::F16 || ti.dtype == DType::F32,
                 "{}: tensor '{}' has dtype {}; weights must be BF16, F16 or F32", ti.file, ti.name,
                 dtype_name(ti.dtype));
    info[t] = &ti;
    if (!uploaded.count(td.weight) && !counted[td.weight]) {
      counted[td.weight] = true;
      total += ti.nbytes;
    }
  }
  std::vector<const void*> ptrs(g.tensors.size(), nullptr);
  size_t done = 0;
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const TensorDesc& td = g.tensors[t];
    if (!info[t]) continue;
    auto it = uploaded.find(td.weight);
    if (it == uploaded.end()) {
      it = uploaded.emplace(td.weight, be.upload_weight(*info[t])).first;
      done += info[t]->nbytes;
      if (progress) progress(done, total, td.weight);
    }
    const auto* base = static_cast<const std::byte*>(it->second);
    ptrs[t] = base + static_cast<size_t>(td.weight_row0 * td.cols.c) * be.weight_elem_size();
  }
  return ptrs;
}

Model::Model(const std::string& dir, Backend& be, const LoadProgress& progress, int run_layers)
    : dir_(dir), be_(be), progress_(progress), run_layers_(run_layers) {
  namespace fs = std::filesystem;
  MOSAIC_CHECK(fs::is_directory(dir), "model directory '{}' does not exist (pass --model DIR with config.json "
               "and *.safetensors)", dir);
  config_ = io::load_model_config((fs::path(dir) / "config.json").string());
  ckpt_ = std::make_unique<io::Checkpoint>(io::Checkpoint::open(dir));
  WeightNames names{config_.arch};
  fused_qkv_ = ckpt_->find(names.layer(0, WeightRole::FusedQKV)) != nullptr &&
               ckpt_->find(names.layer(0, WeightRole::Q)) == nullptr;
  MOSAIC_CHECK(run_layers_ <= 0 || run_layers_ <= config_.n_layers, "cannot run {} layers of a {}-layer model",
               run_layers_, config_.n_layers);
  // Load every weight now, so the first step is not the one that pays for it.
  Graph full = build_step_graph(config_, graph_options(false, false));
  bind_weights(full, *ckpt_, be_, weights_, progress_);
}

Model::~Model() = default;

int32_t Model::head_row(int64_t pos) const {
  if (config_.arch == io::Arch::Dream) return static_cast<int32_t>(pos > 0 ? pos - 1 : 0);
  return static_cast<int32_t>(pos);
}

GraphOptions Model::graph_options(bool cfg, bool emit_logits) const {
  GraphOptions o;
  o.cfg = cfg;
  o.emit_logits = emit_logits;
  o.fused_qkv = fused_qkv_;
  o.traits = be_.traits();
  // A run of the first layers stands in for the middle of the model: keep them all L rows.
  o.masked_last_layer = masked_last_layer_ && (run_layers_ <= 0 || run_layers_ == config_.n_layers);
  o.first_layer = first_layer_;
  o.end_layer = end_layer_;
  return o;
}

Model::Runner& Model::runner(bool cfg, bool emit_logits) {
  auto key = std::make_pair(cfg, emit_logits);
  auto it = runners_.find(key);
  if (it != runners_.end()) return *it->second;
  auto r = std::make_unique<Runner>();
  io::ModelConfig c = config_;
  if (run_layers_ > 0) c.n_layers = run_layers_;
  r->graph = build_step_graph(c, graph_options(cfg, emit_logits));
  r->exec = std::make_unique<Executor>(be_, r->graph, bind_weights(r->graph, *ckpt_, be_, weights_, progress_));
  return *runners_.emplace(key, std::move(r)).first->second;
}

const Graph& Model::graph(bool cfg, bool emit_logits) { return runner(cfg, emit_logits).graph; }

const MemoryPlan& Model::plan(const Dims& d, bool cfg, bool emit_logits) {
  Runner& r = runner(cfg, emit_logits);
  return r.plans.get(r.graph, d, be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
}

StepOutputs Model::step(const std::vector<int32_t>& tokens, const std::vector<int32_t>* uncond,
                        const std::vector<int32_t>& pos, const SampleParams& p, bool emit_logits, StepStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  const int64_t L = static_cast<int64_t>(tokens.size());
  for (int32_t t : tokens)
    MOSAIC_CHECK(t >= 0 && t < config_.embedding_size, "token id {} is outside the model's embedding (size {})", t,
                 config_.embedding_size);
  const bool cfg = uncond != nullptr;
  Runner& r = runner(cfg, emit_logits);
  Dims d{L, static_cast<int64_t>(pos.size())};
  const MemoryPlan& plan = r.plans.get(r.graph, d, be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
  be_.reserve_arena(plan.arena_bytes());
  std::vector<int32_t> rows(pos.size());
  for (size_t i = 0; i < pos.size(); ++i) rows[i] = head_row(pos[i]);
  StepInputs in{&tokens, uncond, &rows, &pos, hidden_in_};
  StepOutputs out;
  r.exec->set_op_times(op_times_);
  r.exec->run(plan, in, p, &out);
  if (stats) {
    stats->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    stats->arena_bytes = plan.arena_bytes();
    stats->peak_live = plan.peak_live;
    stats->avg_live = plan.avg_live_timed;
    stats->mapped_bytes = be_.arena_mapped_bytes();
    stats->chunks = plan.chunks;
  }
  return out;
}

}  // namespace mosaic
