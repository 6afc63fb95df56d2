#include "models/model.h"

#include <chrono>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "offload/expert_offload.h"
#include "offload/routing_replay.h"

namespace mosaic {

std::map<int, std::vector<std::string>> routed_expert_names(const Graph& g) {
  std::map<int, std::vector<std::string>> names;
  for (const Node& n : g.nodes)
    if (n.op == Op::MoeExperts) {
      auto& v = names[n.layer];
      v.clear();
      for (size_t i = 3; i < n.in.size(); ++i) v.push_back(g.tensors[n.in[i].tensor].weight);
    }
  return names;
}

std::vector<const void*> bind_weights(const Graph& g, const io::Checkpoint& ck, Backend& be,
                                      std::map<std::string, const void*>& uploaded, const LoadProgress& progress,
                                      const std::set<std::string>* on_host) {
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
      const bool host = on_host && on_host->count(td.weight);
      it = uploaded.emplace(td.weight, host ? be.upload_weight_host(*info[t]) : be.upload_weight(*info[t])).first;
      done += info[t]->nbytes;
      if (progress) progress(done, total, td.weight);
    }
    const auto* base = static_cast<const std::byte*>(it->second);
    ptrs[t] = base + static_cast<size_t>(td.weight_row0 * td.cols.c) * be.weight_elem_size();
  }
  return ptrs;
}

Model::Model(const std::string& dir, Backend& be, const LoadProgress& progress, int run_layers,
             bool routed_experts_on_host)
    : dir_(dir), be_(be), progress_(progress), run_layers_(run_layers), experts_on_host_(routed_experts_on_host) {
  namespace fs = std::filesystem;
  MOSAIC_CHECK(fs::is_directory(dir), "model directory '{}' does not exist (pass --model DIR with config.json "
               "and *.safetensors)", dir);
  config_ = load_model_config((fs::path(dir) / "config.json").string());
  family_ = &family_of(config_);
  ckpt_ = std::make_unique<io::Checkpoint>(io::Checkpoint::open(dir));
  fused_qkv_ = family_->fused_qkv(config_, *ckpt_);
  MOSAIC_CHECK(run_layers_ <= 0 || run_layers_ <= config_.n_layers, "cannot run {} layers of a {}-layer model",
               run_layers_, config_.n_layers);
  // Load every weight now, so the first step is not the one that pays for it. With the routed
  // experts on the host (an offload, for models too large to hold) and run_layers, only the layers
  // run load: LLaDA2.0-flash's 186 GB of experts do not fit a 128 GB host, its first layers do.
  GraphOptions all = load_options();
  const Graph g = family_->build_step_graph(config_, all);
  std::set<std::string> on_host;
  if (experts_on_host_) {
    MOSAIC_CHECK(config_.moe.experts > 0, "{}: routed experts on the host, but the model has none", config_.source);
    for (const auto& [layer, names] : routed_expert_names(g)) on_host.insert(names.begin(), names.end());
  }
  bind_weights(g, *ckpt_, be_, weights_, progress_, &on_host);
}

void Model::set_offload(offload::ExpertOffload* o) {
  if (o && experts_on_host_)
    MOSAIC_CHECK(o->slots() < o->experts(), "offload: {} GPU slots for {} experts needs no host copies", o->slots(),
                 o->experts());
  offload_ = o;
  if (!o || !experts_on_host_) return;
  const GraphOptions all = load_options();
  const size_t es = be_.weight_elem_size();
  const size_t matrix = static_cast<size_t>(config_.d_model * config_.moe.ffn_hidden) * es;
  // A previous offload's copies may still fly behind its last step, into the slots loaded here.
  be_.synchronize();
  for (const auto& [layer, names] : routed_expert_names(family_->build_step_graph(config_, all))) {
    std::vector<const void*>& host = experts_.host[layer];
    host.clear();
    for (const std::string& n : names) host.push_back(weights_.at(n));
    // Each slot holds one expert's gate, up and down; it starts with the expert the placement
    // starts with (offload::LayerPlacement: experts 0 .. slots-1). A later offload with as many
    // slots or fewer reuses the slots allocated before.
    std::vector<void*>& slots = experts_.slots[layer];
    while (static_cast<int>(slots.size()) < 3 * o->slots()) slots.push_back(be_.alloc_weight(matrix));
    const offload::LayerPlacement& p = o->placement(layer);
    for (int s = 0; s < o->slots(); ++s)
      for (int j = 0; j < 3; ++j) be_.upload(slots[3 * s + j], host[3 * p.expert_in(s) + j], matrix);
  }
  be_.synchronize();
}

Model::~Model() = default;

GraphOptions Model::load_options() const {
  GraphOptions o;
  o.fused_qkv = fused_qkv_;
  o.traits = be_.traits();
  if (experts_on_host_ && run_layers_ > 0) o.run_layers = run_layers_;
  return o;
}

GraphOptions Model::graph_options(const StepRequest& r) const {
  GraphOptions o;
  o.guided = r.guided();
  o.emit_logits = r.emit_logits;
  o.fused_qkv = fused_qkv_;
  o.traits = be_.traits();
  o.run_layers = run_layers_;
  // A run of the first layers stands in for the middle of the model: keep them all L rows.
  o.masked_last_layer = masked_last_layer_ && (run_layers_ <= 0 || run_layers_ == config_.n_layers);
  o.first_layer = first_layer_;
  o.end_layer = end_layer_;
  o.attention_block = r.attention_block;
  o.sharded = !comms_.empty();
  if (o.sharded) o.exchange = exchange_, o.ranks = ranks();
  o.cache = r.cache.options.mode;
  if (o.cache != CacheMode::None) {
    o.cache_step = r.cache.step;
    if (o.cache == CacheMode::Sparse && o.cache_step == CacheStep::Store) {
      o.sparse_keep = r.cache.options.sparse_keep;
      o.sparse_kernel = r.cache.options.sparse_kernel;
    }
  }
  return o;
}

Dims Model::dims(const StepRequest& r) const {
  const int64_t S = r.tokens ? static_cast<int64_t>(r.tokens->size()) : 0;
  Dims d{S, static_cast<int64_t>(r.head_pos.size())};
  if (!comms_.empty()) return sharded_step_dims(S, d.M, ranks());
  const CacheRequest& c = r.cache;
  if (c.options.mode == CacheMode::None) return d;
  d.B = c.block_end - c.block_begin;
  d.K = cache_rows(c.options, S, d.B);
  if (c.step == CacheStep::Cached) d.L = c.run_end - c.run_begin;
  return d;
}

Model::Runner& Model::runner(const GraphOptions& o) {
  auto it = runners_.find(o);
  if (it != runners_.end()) return *it->second;
  auto r = std::make_unique<Runner>();
  r->graph = family_->build_step_graph(config_, o);
  r->exec = std::make_unique<Executor>(be_, r->graph, bind_weights(r->graph, *ckpt_, be_, weights_, progress_));
  r->exec->set_offload(offload_, experts_on_host_ ? &experts_ : nullptr);
  return *runners_.emplace(o, std::move(r)).first->second;
}

const Graph& Model::graph(const StepRequest& r) { return runner(graph_options(r)).graph; }

const MemoryPlan& Model::plan(const Dims& d, const StepRequest& req) {
  Runner& r = runner(graph_options(req));
  return r.plans.get(r.graph, d, be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
}

GenerationPlan Model::check_generation(const CacheOptions& cache, const GenerationShape& shape, bool guided) {
  StepRequest r;  // only its kind matters: guided or not
  const std::vector<int32_t> no_tokens;
  if (guided) r.tokens_uncond = &no_tokens;
  GenerationPlanner planner{config_, graph_options(r), cache, budget_, chunk_min_rows_, tame_target_, ranks()};
  GenerationPlan plan = planner.plan(shape);
  if (!plan.fits) throw OutOfBudget(describe_misfit(planner, shape, plan));
  return plan;
}

void Model::check_cache_request(const StepRequest& req, int64_t L) const {
  const CacheRequest& c = req.cache;
  validate_cache_options(c.options);
  MOSAIC_CHECK(first_layer_ == 0 && end_layer_ < 0, "step: cached decoding runs whole steps, not layer segments");
  MOSAIC_CHECK(0 <= c.block_begin && c.block_begin < c.block_end && c.block_end <= L,
               "step: the block [{}, {}) is not inside the {}-token sequence", c.block_begin, c.block_end, L);
  if (c.step != CacheStep::Cached) return;
  if (req.attention_block > 0) {
    MOSAIC_CHECK(c.options.mode == CacheMode::Prefix, "step: block-causal attention takes the prefix cache only");
    MOSAIC_CHECK(0 <= c.run_begin && c.run_begin <= c.block_begin && c.run_end == c.block_end,
                 "step: an exact prefix cache's step runs rows [r, {}) with r <= {}, not [{}, {})", c.block_end,
                 c.block_begin, c.run_begin, c.run_end);
    for (int32_t p : req.head_pos)
      MOSAIC_CHECK(p >= c.block_begin && p < c.block_end, "step: head position {} is outside the block [{}, {})", p,
                   c.block_begin, c.block_end);
    return;
  }
  const int64_t run_end = c.options.mode == CacheMode::Prefix ? L : c.block_end;
  MOSAIC_CHECK(c.run_begin == c.block_begin && c.run_end == run_end,
               "step: a {} cache's cached step runs rows [{}, {}), not [{}, {})", cache_mode_name(c.options.mode),
               c.block_begin, run_end, c.run_begin, c.run_end);
  for (int32_t p : req.head_pos)
    MOSAIC_CHECK(p >= c.run_begin && p < c.run_end, "step: head position {} is outside the rows run [{}, {})", p,
                 c.run_begin, c.run_end);
}

StepOutputs Model::step(const StepRequest& req, StepStats* stats) {
  if (!comms_.empty()) return step_sharded(req, stats);
  auto t0 = std::chrono::steady_clock::now();
  MOSAIC_CHECK(req.tokens != nullptr, "step: no token sequence given");
  const std::vector<int32_t>& tokens = *req.tokens;
  const int64_t L = static_cast<int64_t>(tokens.size());
  check_tokens(req);
  const CacheRequest& cache = req.cache;
  const bool use_cache = cache.options.mode != CacheMode::None;
  const bool cached = use_cache && cache.step == CacheStep::Cached;
  if (use_cache) check_cache_request(req, L);
  Runner& r = runner(graph_options(req));
  const Dims d = dims(req);
  const MemoryPlan& plan = r.plans.get(r.graph, d, be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
  // A step whose graph has no caches, or other ones, may overwrite them.
  CacheState state{cache.options.mode, L, cache.block_begin, cache.block_end, d.K, req.guided()};
  if (!use_cache || cache_state_.mode != state.mode || cache_state_.rows != state.rows ||
      cache_state_.tokens != state.tokens || cache_state_.guided != state.guided)
    cache_state_ = {};
  const bool exact = cached && req.attention_block > 0;
  if (exact) {
    // Block-causal attention makes the prefix cache exact: rows written once stay right. A step
    // may read the rows before its own only if this generation's earlier steps wrote them.
    const CacheState shape{cache.options.mode, L, 0, 0, d.K, req.guided()};
    if (!(exact_state_ == shape)) exact_state_ = shape, written_ = 0;
    MOSAIC_CHECK(cache.run_begin <= written_, "step: rows [{}, {}) are not in the cache (it holds rows [0, {}))",
                 written_, cache.run_begin, written_);
  } else {
    exact_state_ = {};
    MOSAIC_CHECK(!cached || cache_state_ == state,
                 "step: a cached step of the block at {} found no cache stored for it (a block's first step stores "
                 "it)", cache.block_begin);
  }
  batch_state_ = {};  // the caches a batch packed are not this sequence's
  be_.reserve_arena(plan.arena_bytes(), use_cache ? plan.persistent_bytes() : 0);

  // The rows this step runs: the whole sequence, or a cached step's [run_begin, run_end).
  const int64_t r0 = cached ? cache.run_begin : 0;
  std::vector<int32_t> run_tokens, run_uncond;
  if (cached) {
    run_tokens.assign(tokens.begin() + r0, tokens.begin() + cache.run_end);
    if (req.guided()) run_uncond.assign(req.tokens_uncond->begin() + r0, req.tokens_uncond->begin() + cache.run_end);
  }
  // Each head position's row, in the rows run; a cached step that does not run a shifted
  // family's row p - 1 reads row p (as Fast-dLLM and Sparse-dLLM do for the block's first row).
  std::vector<int32_t> rows(req.head_pos.size()), row_pos(req.head_pos.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t row = std::max<int64_t>(family_->head_row(req.head_pos[i]), r0);
    row_pos[i] = static_cast<int32_t>(row);
    rows[i] = static_cast<int32_t>(row - r0);
  }
  InputBindings in{{"tokens", HostInput::of(cached ? run_tokens : tokens)}, {"head_rows", HostInput::of(rows)},
                   {"head_pos", HostInput::of(req.head_pos)}};
  if (req.guided()) in["tokens_uncond"] = HostInput::of(cached ? run_uncond : *req.tokens_uncond);
  if (req.hidden_in) in["hidden"] = HostInput::of(*req.hidden_in);
  std::vector<int32_t> pos, block_rows, outside_rows;
  if (cached) {
    for (int64_t p = cache.run_begin; p < cache.run_end; ++p) pos.push_back(static_cast<int32_t>(p));
    in["pos"] = HostInput::of(pos);
    // Prefix and dual caches hold every position at its own row, where the fresh keys go; a
    // sparse cache holds only its kept rows.
    if (cache.options.mode != CacheMode::Sparse) in["cache_rows"] = HostInput::of(pos);
    in["head_row_pos"] = HostInput::of(row_pos);
  }
  if (cache.options.mode == CacheMode::Sparse && cache.step == CacheStep::Store) {
    for (int64_t p = 0; p < L; ++p)
      (p >= cache.block_begin && p < cache.block_end ? block_rows : outside_rows).push_back(static_cast<int32_t>(p));
    in["block_rows"] = HostInput::of(block_rows);
    in["outside_rows"] = HostInput::of(outside_rows);
  }
  OutputBuffers buffers;
  MOSAIC_CHECK(!experts_on_host_ || offload_, "{}: the routed experts were loaded into host memory for an expert "
               "offload, and none is set", dir_);
  r.exec->set_op_times(op_times_);
  r.exec->set_offload(offload_, experts_on_host_ && offload_ ? &experts_ : nullptr);
  if (offload_) offload_->begin_step(std::max(req.step_in_block, 0));
  r.exec->set_routing_tap(routing_tap_);
  if (routing_tap_) routing_tap_->begin_step();
  r.exec->run(plan, in, req.sample, &buffers);

  StepOutputs out;
  if (buffers.has("token")) {
    out.token = buffers.as<int32_t>("token");
    out.conf = buffers.as<float>("conf");
    out.order = buffers.as<int32_t>("order");
  }
  if (buffers.has("logits")) out.logits = buffers.as<float>("logits");
  if (buffers.has("hidden")) out.hidden = std::move(buffers.bytes.at("hidden"));
  if (use_cache && cache.step == CacheStep::Store) cache_state_ = state;
  if (exact) written_ = std::max(written_, cache.run_end);
  record_stats(stats, t0, plan, d.L);
  return out;
}

void Model::check_tokens(const StepRequest& req) const {
  const std::vector<int32_t>& tokens = *req.tokens;
  const int64_t L = static_cast<int64_t>(tokens.size());
  for (int32_t t : tokens)
    MOSAIC_CHECK(t >= 0 && t < config_.embedding_size, "token id {} is outside the model's embedding (size {})", t,
                 config_.embedding_size);
  MOSAIC_CHECK(!req.guided() || req.tokens_uncond->size() == tokens.size(),
               "step: the guidance sequence has {} tokens, the sequence {}", req.tokens_uncond->size(), L);
  for (int32_t p : req.head_pos)
    MOSAIC_CHECK(p >= 0 && p < L, "step: head position {} is outside the {}-token sequence", p, L);
}

void Model::record_stats(StepStats* stats, std::chrono::steady_clock::time_point t0, const MemoryPlan& plan,
                         int64_t rows) const {
  if (!stats) return;
  stats->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  stats->rows = rows;
  stats->arena_bytes = plan.arena_bytes();
  stats->peak_live = plan.peak_live;
  stats->avg_live = plan.avg_live_timed;
  stats->mapped_bytes = be_.arena_mapped_bytes();
  stats->chunks = plan.chunks;
}

}  // namespace mosaic
