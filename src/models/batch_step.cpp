// Model::step_batch: several sequences' steps in one pass. Their rows are packed along L, one
// sequence after another; every row carries its position in its own sequence, and the
// executor's StepLayout runs attention per sequence over its own keys and the head per
// sequence with its own sampling parameters. Everything else in a step works row by row, so a
// sequence's outputs are those of its step alone.
#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "models/model.h"
#include "offload/expert_offload.h"
#include "offload/routing_replay.h"

namespace mosaic {

GenerationPlan Model::check_batch(const CacheOptions& cache, const std::vector<GenerationShape>& shapes, bool guided) {
  MOSAIC_CHECK(comms_.empty(), "check_batch: a model sharded across {} ranks steps one sequence at a time", ranks());
  StepRequest r;  // only its kind matters: guided or not
  const std::vector<int32_t> no_tokens;
  if (guided) r.tokens_uncond = &no_tokens;
  GraphOptions base = graph_options(r);
  base.packed = true;
  // The batch's steps are a generation's steps over the sum of the sequences: their rows, head
  // rows, blocks and caches add up.
  GenerationShape sum;
  for (const GenerationShape& s : shapes) {
    sum.tokens += s.tokens;
    sum.block += std::min(s.block, s.tokens);
    sum.masked += std::min(s.masked, s.tokens);
  }
  GenerationPlanner planner{config_, base, cache, budget_, chunk_min_rows_, tame_target_};
  return planner.plan(sum);
}

std::vector<StepOutputs> Model::step_batch(const std::vector<BatchEntry>& batch, StepStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  MOSAIC_CHECK(!batch.empty(), "step_batch: no sequence given");
  MOSAIC_CHECK(comms_.empty(), "step_batch: a model sharded across {} ranks steps one sequence at a time", ranks());
  for (const BatchEntry& e : batch) MOSAIC_CHECK(e.request && e.request->tokens, "step_batch: a sequence has no tokens");
  const StepRequest& first = *batch.front().request;
  GraphOptions o = graph_options(first);
  for (const BatchEntry& e : batch)
    MOSAIC_CHECK(graph_options(*e.request) == o,
                 "step_batch: sequences that want different kinds of step (guidance, cache mode or step, "
                 "block-causal blocks, logits) cannot share a pass");
  o.packed = true;
  const CacheMode mode = first.cache.options.mode;
  const CacheStep kind = mode == CacheMode::None ? CacheStep::Full : first.cache.step;
  const bool cached = kind == CacheStep::Cached;
  MOSAIC_CHECK(mode != CacheMode::Sparse, "step_batch: a sparse cache's sequences run alone");
  MOSAIC_CHECK(first_layer_ == 0 && end_layer_ < 0, "step_batch: layer segments run alone");
  MOSAIC_CHECK(!(cached && first.attention_block > 0), "step_batch: the exact prefix cache's sequences run alone");

  // Cached steps read the caches the batch's Store step packed: each sequence's own, by id.
  if (cached) {
    MOSAIC_CHECK(batch_state_.mode == mode && batch_state_.guided == first.guided(),
                 "step_batch: a cached step found no caches a batch stored (a block's first step stores them)");
  }
  std::map<int64_t, PackedCache> stored;

  StepLayout layout;
  std::vector<int32_t> tokens, uncond, pos, cache_rows, head_rows, head_row_pos, head_pos;
  std::vector<int32_t> key_lo, key_hi, head_key_lo, head_key_hi;
  // A query at position p of a sequence whose keys start at key0: keys [key0, key0 + its
  // sequence's keys), or with block-causal attention those below its block's end.
  const int64_t block = first.attention_block;
  auto key_range = [&](const PackedSequence& s, int64_t p, std::vector<int32_t>& lo, std::vector<int32_t>& hi) {
    const int64_t seen = block > 0 ? std::min(s.keys, (p / block + 1) * block) : s.keys;
    lo.push_back(static_cast<int32_t>(s.key0));
    hi.push_back(static_cast<int32_t>(s.key0 + seen));
  };
  int64_t blocks = 0;
  for (const BatchEntry& e : batch) {
    const StepRequest& req = *e.request;
    const std::vector<int32_t>& seq = *req.tokens;
    const int64_t S = static_cast<int64_t>(seq.size());
    check_tokens(req);
    MOSAIC_CHECK(!req.hidden_in, "step_batch: layer segments run alone");
    if (mode != CacheMode::None) check_cache_request(req, S);
    const CacheRequest& c = req.cache;
    const int64_t rb = cached ? c.run_begin : 0, re = cached ? c.run_end : S;

    PackedSequence ps;
    ps.row0 = static_cast<int64_t>(tokens.size());
    ps.rows = re - rb;
    ps.head0 = static_cast<int64_t>(head_rows.size());
    ps.heads = static_cast<int64_t>(req.head_pos.size());
    ps.sample = req.sample;
    if (cached) {
      auto it = batch_state_.sequences.find(e.id);
      const PackedCache want{it == batch_state_.sequences.end() ? -1 : it->second.key0, S, c.block_begin, c.block_end};
      MOSAIC_CHECK(it != batch_state_.sequences.end() && it->second == want,
                   "step_batch: a cached step of sequence {} (block at {}) found no cache stored for it", e.id,
                   c.block_begin);
      ps.key0 = it->second.key0;
      ps.keys = S;  // prefix and dual caches hold every position
    } else {
      ps.key0 = ps.row0;  // the step's own keys (a Store step writes them in place: its rows are the cache's)
      ps.keys = S;
      if (kind == CacheStep::Store) {
        MOSAIC_CHECK(!stored.count(e.id), "step_batch: sequence id {} appears twice", e.id);
        stored[e.id] = {ps.key0, S, c.block_begin, c.block_end};
      }
    }
    tokens.insert(tokens.end(), seq.begin() + rb, seq.begin() + re);
    if (req.guided()) uncond.insert(uncond.end(), req.tokens_uncond->begin() + rb, req.tokens_uncond->begin() + re);
    for (int64_t p = rb; p < re; ++p) {
      pos.push_back(static_cast<int32_t>(p));
      key_range(ps, p, key_lo, key_hi);
      if (cached) cache_rows.push_back(static_cast<int32_t>(ps.key0 + p));
    }
    // As Model::step: a cached step that does not run a shifted family's row p - 1 reads row p.
    for (int32_t p : req.head_pos) {
      const int64_t row = std::max<int64_t>(family_->head_row(p), rb);
      head_rows.push_back(static_cast<int32_t>(ps.row0 + row - rb));
      head_row_pos.push_back(static_cast<int32_t>(row));
      key_range(ps, row, head_key_lo, head_key_hi);
      head_pos.push_back(p);
    }
    blocks += mode == CacheMode::None ? 0 : c.block_end - c.block_begin;
    layout.push_back(ps);
  }

  Dims d{static_cast<int64_t>(tokens.size()), static_cast<int64_t>(head_rows.size())};
  if (mode != CacheMode::None) {
    d.B = blocks;
    d.K = cached ? batch_state_.rows : d.L;
  }
  Runner& r = runner(o);
  const MemoryPlan& plan = r.plans.get(r.graph, d, be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
  cache_state_ = {};  // a single sequence's caches are gone once a batch uses the arena
  exact_state_ = {};
  if (!cached) batch_state_ = {};
  be_.reserve_arena(plan.arena_bytes(), mode != CacheMode::None ? plan.persistent_bytes() : 0);

  InputBindings in{{"tokens", HostInput::of(tokens)},
                   {"head_rows", HostInput::of(head_rows)},
                   {"head_pos", HostInput::of(head_pos)},
                   {"pos", HostInput::of(pos)},
                   {"head_row_pos", HostInput::of(head_row_pos)},
                   {"key_lo", HostInput::of(key_lo)},
                   {"key_hi", HostInput::of(key_hi)},
                   {"head_key_lo", HostInput::of(head_key_lo)},
                   {"head_key_hi", HostInput::of(head_key_hi)}};
  if (first.guided()) in["tokens_uncond"] = HostInput::of(uncond);
  if (cached) in["cache_rows"] = HostInput::of(cache_rows);
  OutputBuffers buffers;
  MOSAIC_CHECK(!experts_on_host_ || offload_, "{}: the routed experts were loaded into host memory for an expert "
               "offload, and none is set", dir_);
  r.exec->set_op_times(op_times_);
  r.exec->set_offload(offload_, experts_on_host_ && offload_ ? &experts_ : nullptr);
  if (offload_) offload_->begin_step(std::max(first.step_in_block, 0));
  r.exec->set_routing_tap(routing_tap_);
  if (routing_tap_) routing_tap_->begin_step();
  r.exec->run(plan, in, first.sample, &buffers, &layout);
  if (kind == CacheStep::Store) batch_state_ = {mode, first.guided(), d.K, std::move(stored)};

  // Each sequence's outputs: its head rows' tokens, confidences and order (ranked apart).
  std::vector<StepOutputs> outs(batch.size());
  const bool sampled = buffers.has("token");
  std::vector<int32_t> token, order;
  std::vector<float> conf, logits;
  if (sampled) {
    token = buffers.as<int32_t>("token");
    conf = buffers.as<float>("conf");
    order = buffers.as<int32_t>("order");
  }
  if (buffers.has("logits")) logits = buffers.as<float>("logits");
  const int64_t V = d.M > 0 && !logits.empty() ? static_cast<int64_t>(logits.size()) / d.M : 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const PackedSequence& s = layout[i];
    StepOutputs& out = outs[i];
    if (sampled) {
      out.token.assign(token.begin() + s.head0, token.begin() + s.head0 + s.heads);
      out.conf.assign(conf.begin() + s.head0, conf.begin() + s.head0 + s.heads);
      out.order.assign(order.begin() + s.head0, order.begin() + s.head0 + s.heads);
    }
    if (V > 0) out.logits.assign(logits.begin() + s.head0 * V, logits.begin() + (s.head0 + s.heads) * V);
  }
  record_stats(stats, t0, plan, d.L);
  return outs;
}

}  // namespace mosaic
