// Model::step_sharded: one step's rows split across ranks (issue 17, context parallelism).
// Rank r runs rows parallel::shard_rows(L, ranks)[r] of the sequence through every layer on its
// own backend, in a thread of its own; each layer exchanges what attention needs (the ranks' keys
// and values, or every rank's rows of a group of heads: GraphOptions::exchange), so every query
// attends to the whole sequence as on one device. The FFN and
// the head are local: a rank samples the head rows that fall in its shard, and the host merges
// them and ranks the step's rows by confidence as the device would.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <numeric>
#include <thread>

#include "core/error.h"
#include "models/model.h"
#include "parallel/communicator.h"
#include "parallel/sequence_shards.h"

namespace mosaic {

void Model::set_shards(std::vector<Model*> peers, std::vector<parallel::Communicator*> comms,
                       parallel::Exchange exchange) {
  MOSAIC_CHECK(comms.size() == peers.size() + 1, "set_shards: {} peers need {} communicators, not {}", peers.size(),
               peers.size() + 1, comms.size());
  for (size_t r = 0; r < comms.size(); ++r)
    MOSAIC_CHECK(comms[r] && comms[r]->rank() == static_cast<int>(r) && comms[r]->size() == static_cast<int>(comms.size()),
                 "set_shards: communicator {} is not rank {} of a group of {}", r, r, comms.size());
  for (size_t i = 0; i < peers.size(); ++i) {
    const Model* p = peers[i];
    MOSAIC_CHECK(p && p != this, "set_shards: a peer is missing or is this model");
    MOSAIC_CHECK(std::find(peers.begin(), peers.begin() + static_cast<std::ptrdiff_t>(i), p) == peers.begin() +
                     static_cast<std::ptrdiff_t>(i),
                 "set_shards: peer {} is given twice (each rank runs its own model)", i + 1);
    MOSAIC_CHECK(p->dir_ == dir_ && p->run_layers_ == run_layers_ && p->fused_qkv_ == fused_qkv_ &&
                     p->be_.traits() == be_.traits(),
                 "set_shards: every rank runs the same model ('{}', {} layers run) on the same kind of backend", dir_,
                 run_layers_);
  }
  MOSAIC_CHECK(comms.size() == 1 || !experts_on_host_, "{}: an expert offload runs on one device", dir_);
  exchange_ = parallel::resolve_exchange(exchange, static_cast<int>(config_.n_heads),
                                         static_cast<int>(config_.n_kv_heads), static_cast<int>(comms.size()));
  peers_ = std::move(peers);
  comms_ = std::move(comms);
}

StepOutputs Model::step_sharded(const StepRequest& req, StepStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  MOSAIC_CHECK(req.tokens != nullptr, "step: no token sequence given");
  check_tokens(req);
  const int n = ranks();
  MOSAIC_CHECK(!ranks_aborted_, "step: a rank failed in an earlier step and the {} ranks' communicators were "
               "aborted; start again", n);
  MOSAIC_CHECK(req.cache.options.mode == CacheMode::None,
               "step: a step sharded across {} ranks runs without a cache (--cache none)", n);
  MOSAIC_CHECK(first_layer_ == 0 && end_layer_ < 0 && !req.hidden_in,
               "step: a step sharded across {} ranks runs whole steps, not layer segments", n);
  MOSAIC_CHECK(!offload_ && !routing_tap_, "step: a step sharded across {} ranks runs without an expert offload", n);
  const std::vector<int32_t>& tokens = *req.tokens;
  const int64_t L = static_cast<int64_t>(tokens.size());
  MOSAIC_CHECK(L >= n, "step: {} tokens cannot be sharded across {} ranks (each runs one row at least)", L, n);
  const std::vector<parallel::Shard> shards = parallel::shard_rows(L, n);

  struct Rank {
    Model* model = nullptr;
    Runner* runner = nullptr;
    const MemoryPlan* plan = nullptr;
    std::vector<int32_t> tokens, uncond, pos, head_rows, head_pos, head_row_pos;
    std::vector<size_t> heads;  // the step's head rows this rank samples, by their index in the step
    OutputBuffers out;
  };
  std::vector<Rank> rank(static_cast<size_t>(n));
  // Each head position's row (a shifted family reads row p - 1), on the rank that holds it.
  for (size_t i = 0; i < req.head_pos.size(); ++i) {
    const int64_t row = std::max<int64_t>(family_->head_row(req.head_pos[i]), 0);
    const size_t r = parallel::shard_of(shards, row);
    Rank& k = rank[r];
    k.heads.push_back(i);
    k.head_rows.push_back(static_cast<int32_t>(row - shards[r].begin));
    k.head_row_pos.push_back(static_cast<int32_t>(row));
    k.head_pos.push_back(req.head_pos[i]);
  }
  const GraphOptions options = graph_options(req);  // the sharded graph (set_shards checked the peers' backends)
  // Plans and arenas first, in this thread: a rank that failed here, with the others already
  // inside a collective, would leave them waiting.
  for (int r = 0; r < n; ++r) {
    Rank& k = rank[static_cast<size_t>(r)];
    Model& m = r == 0 ? *this : *peers_[static_cast<size_t>(r - 1)];
    m.budget_ = budget_, m.chunk_min_rows_ = chunk_min_rows_, m.tame_target_ = tame_target_;
    m.masked_last_layer_ = masked_last_layer_;
    m.cache_state_ = {}, m.exact_state_ = {}, m.batch_state_ = {};
    const parallel::Shard s = shards[static_cast<size_t>(r)];
    k.model = &m;
    m.be_.make_current();  // runner() may upload weights
    k.runner = &m.runner(options);
    k.tokens.assign(tokens.begin() + s.begin, tokens.begin() + s.end());
    if (req.guided()) k.uncond.assign(req.tokens_uncond->begin() + s.begin, req.tokens_uncond->begin() + s.end());
    k.pos.resize(static_cast<size_t>(s.count));
    std::iota(k.pos.begin(), k.pos.end(), static_cast<int32_t>(s.begin));
    const Dims d{s.count, static_cast<int64_t>(k.heads.size()), L, 0};
    k.plan = &k.runner->plans.get(k.runner->graph, d, m.be_.traits().act_size, budget_, chunk_min_rows_, tame_target_);
    m.be_.reserve_arena(k.plan->arena_bytes(), 0);
  }
  be_.make_current();

  std::mutex mu;
  std::exception_ptr first_error;
  auto run_rank = [&](int r) {
    Rank& k = rank[static_cast<size_t>(r)];
    try {
      k.model->be_.make_current();
      InputBindings in{{"tokens", HostInput::of(k.tokens)},       {"pos", HostInput::of(k.pos)},
                       {"head_rows", HostInput::of(k.head_rows)}, {"head_pos", HostInput::of(k.head_pos)},
                       {"head_row_pos", HostInput::of(k.head_row_pos)}};
      if (req.guided()) in["tokens_uncond"] = HostInput::of(k.uncond);
      Executor& exec = *k.runner->exec;
      exec.set_communicator(comms_[static_cast<size_t>(r)]);
      exec.set_op_times(r == 0 ? op_times_ : nullptr);
      exec.set_offload(nullptr, nullptr);
      exec.set_routing_tap(nullptr);
      exec.run(*k.plan, in, req.sample, &k.out);
    } catch (...) {
      // The first failure stops every rank: the others would wait for this one forever.
      std::lock_guard<std::mutex> lock(mu);
      if (!first_error) {
        first_error = std::current_exception();
        for (parallel::Communicator* c : comms_) c->abort();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < n; ++r) threads.emplace_back(run_rank, r);
  run_rank(0);
  for (std::thread& t : threads) t.join();
  be_.make_current();
  if (first_error) {
    ranks_aborted_ = true;
    std::rethrow_exception(first_error);
  }

  // Every rank's head rows back in the step's order.
  const size_t M = req.head_pos.size();
  StepOutputs out;
  const bool sampled = rank[0].out.has("token");
  const int64_t V = config_.embedding_size;
  if (sampled) out.token.resize(M), out.conf.resize(M);
  if (rank[0].out.has("logits")) out.logits.resize(M * static_cast<size_t>(V));
  for (const Rank& k : rank) {
    if (k.heads.empty()) continue;
    std::vector<int32_t> token;
    std::vector<float> conf, logits;
    if (sampled) token = k.out.as<int32_t>("token"), conf = k.out.as<float>("conf");
    if (!out.logits.empty()) logits = k.out.as<float>("logits");
    for (size_t j = 0; j < k.heads.size(); ++j) {
      const size_t i = k.heads[j];
      if (sampled) out.token[i] = token[j], out.conf[i] = conf[j];
      if (!logits.empty())
        std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(j * V), V, out.logits.begin() + static_cast<std::ptrdiff_t>(i * V));
    }
  }
  if (sampled) {  // Backend::rank_rows's order: most confident first, ties lower row first
    out.order.resize(M);
    std::iota(out.order.begin(), out.order.end(), 0);
    std::stable_sort(out.order.begin(), out.order.end(), [&](int32_t a, int32_t b) { return out.conf[a] > out.conf[b]; });
  }
  if (stats) {
    record_stats(stats, t0, *rank[0].plan, L);
    for (const Rank& k : rank) {
      stats->arena_bytes = std::max(stats->arena_bytes, k.plan->arena_bytes());
      stats->peak_live = std::max(stats->peak_live, k.plan->peak_live);
      stats->mapped_bytes = std::max(stats->mapped_bytes, k.model->be_.arena_mapped_bytes());
    }
  }
  return out;
}

}  // namespace mosaic
