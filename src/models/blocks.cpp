#include "models/blocks.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace mosaic {

StepGraphBuilder::StepGraphBuilder(const io::ModelConfig& c, const GraphOptions& o) : c_(c), o_(o) {}

int StepGraphBuilder::n_layers() const {
  return o_.run_layers > 0 ? std::min<int>(o_.run_layers, static_cast<int>(c_.n_layers)) : static_cast<int>(c_.n_layers);
}

Graph StepGraphBuilder::build(const ModelWeights& w, const LayerFn& layer) {
  const SymDim M = SymDim::masked();
  int tokens = input("tokens", SymDim::tokens());
  int tokens_un = o_.guided ? input("tokens_uncond", SymDim::tokens()) : -1;
  head_rows_ = input("head_rows", M);
  int head_pos = input("head_pos", M);
  if (positioned()) {
    pos_ = input("pos", SymDim::tokens());
    if (cached() && !attends_apart()) cache_rows_ = input("cache_rows", SymDim::tokens());
    head_row_pos_ = input("head_row_pos", M);
  }
  if (o_.packed) {
    key_lo_ = input("key_lo", SymDim::tokens());
    key_hi_ = input("key_hi", SymDim::tokens());
    head_key_lo_ = input("head_key_lo", M);
    head_key_hi_ = input("head_key_hi", M);
  }
  if (selects()) {
    block_rows_ = input("block_rows", SymDim::block());
    outside_rows_ = input("outside_rows", SymDim{0, 1, 0, 0, -1});
  }

  // Each trunk hands the head only its M rows: the guided head keeps the conditional
  // rows, not the whole [L, d] state, while the unconditional trunk runs.
  const int end = o_.end_layer < 0 ? n_layers() : o_.end_layer;
  MOSAIC_CHECK(o_.first_layer >= 0 && o_.first_layer < end && end <= n_layers(),
               "layer segment [{}, {}) is not inside the model's {} layers", o_.first_layer, end, n_layers());
  MOSAIC_CHECK(!o_.guided || (o_.first_layer == 0 && end == n_layers()), "guidance runs whole steps only");
  int x = trunk(tokens, "", layer, w.embed);
  if (x < 0) {  // a segment that hands its hidden state on: no head
    g_.validate();
    return std::move(g_);
  }
  int hc = -1;
  if (o_.guided) {
    hc = x;
    x = trunk(tokens_un, "uncond.", layer, w.embed);
  }

  const int64_t V = c_.embedding_size;
  g_.begin_region({"head", M, true, 0, -1, 1.0});
  int head = g_.open_region;
  int lm = weight(w.lm_head, V, d());
  int ln_f = vec_weight(w.final_norm, d());
  int h = local("head.hidden", head, d());
  node(Op::RmsNorm, {{x}, {ln_f}}, {{h}}, c_.rms_eps);
  int logits = o_.emit_logits ? output("logits", M, SymDim::constant(V), ElemType::F32)
                              : local("head.logits", head, V, ElemType::F32);
  if (o_.guided) {
    int hcl = local("head.hidden_cond", head, d());
    node(Op::RmsNorm, {{hc}, {ln_f}}, {{hcl}}, c_.rms_eps);
    node(Op::MatMul, {{hcl}, {lm}}, {{logits}});
    int lu = local("head.logits_uncond", head, V, ElemType::F32);
    node(Op::MatMul, {{h}, {lm}}, {{lu}});
    node(Op::CfgCombine, {{logits}, {lu}}, {{logits}});
  } else {
    node(Op::MatMul, {{h}, {lm}}, {{logits}});
  }
  int conf = -1;
  if (!o_.emit_logits) {
    int tok = output("token", M, SymDim::constant(1), ElemType::I32);
    conf = output("conf", M, SymDim::constant(1), ElemType::F32);
    node(Op::SampleRows, {{logits}, {head_pos}}, {{tok}, {conf}});
  }
  g_.end_region();
  if (!o_.emit_logits && !o_.sharded) {
    // Which rows to commit is decided on the device too: only k indices need to come back.
    g_.begin_region({"rank", M, false});
    int order = output("order", M, SymDim::constant(1), ElemType::I32);
    node(Op::RankRows, {{conf, true}}, {{order, true}});
    g_.end_region();
  }
  g_.validate();
  return std::move(g_);
}

// The trunk over all L rows; returns the hidden rows the head projects, [M, d], or -1 when
// the layer segment ends before the last layer.
int StepGraphBuilder::trunk(int tokens, const std::string& pfx, const LayerFn& layer, const std::string& embed) {
  const SymDim L = SymDim::tokens();
  const int end = o_.end_layer < 0 ? n_layers() : o_.end_layer;
  const bool whole_model = end == n_layers();
  pfx_ = pfx;
  rows_ = L;
  positions_ = pos_;
  if (o_.first_layer > 0) {
    x_ = g_.add_tensor({"hidden", whole_model ? TensorKind::Input : TensorKind::InOut, ElemType::Act, L,
                        SymDim::constant(d())});
  } else {
    x_ = act(pfx + "x", L, d());
    g_.begin_region({pfx + "embed", L, true});
    node(Op::Embed, {{tokens}, {weight(embed, c_.embedding_size, d())}}, {{x_}});
    g_.end_region();
  }
  for (int l = o_.first_layer; l < end; ++l) layer(*this, l);
  if (!whole_model) {
    g_.tensors[x_].name = "hidden";
    g_.tensors[x_].kind = o_.first_layer > 0 ? TensorKind::InOut : TensorKind::Output;
    return -1;
  }
  if (rows_ == L) x_ = gather_head_rows(x_, pfx);  // the last layer ran all rows
  return x_;
}

void StepGraphBuilder::attention(int l, const AttentionWeights& w) {
  const SymDim L = SymDim::tokens(), M = SymDim::masked();
  const int64_t kvd = c_.kv_dim();
  const std::string lp = fmt::format("{}layer{}.", pfx_, l);
  int attn_norm = vec_weight(w.norm, d());
  int wq, wk, wv;
  if (o_.fused_qkv) {
    int64_t full = qd() + 2 * kvd;
    wq = weight(w.fused_qkv, qd(), d(), 0, full);
    wk = weight(w.fused_qkv, kvd, d(), qd(), full);
    wv = weight(w.fused_qkv, kvd, d(), qd() + kvd, full);
  } else {
    wq = weight(w.q, qd(), d());
    wk = weight(w.k, kvd, d());
    wv = weight(w.v, kvd, d());
  }
  int bq = w.q_bias.empty() ? -1 : vec_weight(w.q_bias, qd());
  int bk = w.k_bias.empty() ? -1 : vec_weight(w.k_bias, kvd);
  int bv = w.v_bias.empty() ? -1 : vec_weight(w.v_bias, kvd);

  // The layer's key/value cache lives across steps; every graph of a cached generation
  // declares it, in the same order, so it keeps its place in the arena.
  int kc = -1, vc = -1;
  if (o_.cache != CacheMode::None) {
    kc = g_.add_tensor({lp + "k_cache", TensorKind::Persistent, ElemType::Act, SymDim::cache(), SymDim::constant(kvd)});
    vc = g_.add_tensor({lp + "v_cache", TensorKind::Persistent, ElemType::Act, SymDim::cache(), SymDim::constant(kvd)});
  }

  // Keys and values for every row first: all queries attend to all of them. A prefix or
  // dual cache's first step writes them straight into the cache.
  int K = stores_in_place() ? kc : act(lp + "k", L, kvd);
  int Vt = stores_in_place() ? vc : act(lp + "v", L, kvd);
  int r = g_.begin_region({lp + "attn_kv", L, true});
  int h = local(lp + "kv.hidden", r, d());
  node(Op::RmsNorm, {{x_}, {attn_norm}}, {{h}}, c_.rms_eps);
  matmul(h, wk, bk, K);
  if (!w.k_norm.empty()) head_norm(K, static_cast<int>(c_.n_kv_heads), w.k_norm);
  rope(K, static_cast<int>(c_.n_kv_heads), pos_);
  matmul(h, wv, bv, Vt);
  int q_rows = -1;  // the all-to-all exchanges this rank's queries of every head too
  if (exchanges_heads()) {
    q_rows = act(lp + "q", L, qd());
    matmul(h, wq, bq, q_rows);
    if (!w.q_norm.empty()) head_norm(q_rows, static_cast<int>(c_.n_heads), w.q_norm);
    rope(q_rows, static_cast<int>(c_.n_heads), pos_);
  }
  if (cached() && !attends_apart()) {  // the fresh rows replace theirs in the cache; attention reads the cache
    node(Op::ScatterRows, {{K}, {cache_rows_}}, {{kc, true}});
    node(Op::ScatterRows, {{Vt}, {cache_rows_}}, {{vc, true}});
  }
  g_.end_region();
  if (exchanges_heads()) {
    attention_by_heads(l, q_rows, K, Vt, weight(w.out, d(), qd()));
    return;
  }
  if (o_.sharded) {  // every rank's keys and values, in rank order: the whole sequence's
    int ka = act(lp + "k_all", SymDim::cache(), kvd), va = act(lp + "v_all", SymDim::cache(), kvd);
    g_.begin_region({lp + "attn_gather", L, false});
    node(Op::AllGatherRows, {{K, true}}, {{ka, true}});
    node(Op::AllGatherRows, {{Vt, true}}, {{va, true}});
    g_.end_region();
    K = ka, Vt = va;
  }
  if (selects()) select_cache(l, attn_norm, wq, bq, w.q_norm, K, Vt, kc, vc);
  // The keys attention reads: the fresh ones, the cache, or (sparse) the kept rows and then the
  // block's fresh ones, which the cache does not hold.
  std::vector<Operand> kv = {{K, true}, {Vt, true}};
  if (attends_apart()) kv = {{kc, true}, {vc, true}, {K, true}, {Vt, true}};
  else if (cached()) kv = {{kc, true}, {vc, true}};
  SymDim kv_rows = g_.tensors[kv[0].tensor].rows;
  if (kv.size() > 2) kv_rows = kv_rows + g_.tensors[kv[2].tensor].rows;

  // Past the last layer's keys and values only the head's rows matter: its queries,
  // attention output and FFN run on M rows instead of L (bit-identical rows, ~1/n_layers
  // less work and memory).
  const int end = o_.end_layer < 0 ? n_layers() : o_.end_layer;
  if (o_.masked_last_layer && l == n_layers() - 1 && end == n_layers()) {
    x_ = gather_head_rows(x_, pfx_);
    rows_ = M;
    positions_ = positioned() ? head_row_pos_ : head_rows_;
  }

  r = g_.begin_region({lp + "attn_q", rows_, true});
  h = local(lp + "q.hidden", r, d());
  int q = local(lp + "q", r, qd());
  int o = local(lp + "attn", r, qd());
  node(Op::RmsNorm, {{x_}, {attn_norm}}, {{h}}, c_.rms_eps);
  matmul(h, wq, bq, q);
  if (!w.q_norm.empty()) head_norm(q, static_cast<int>(c_.n_heads), w.q_norm);
  rope(q, static_cast<int>(c_.n_heads), positions_);
  std::vector<Operand> outs = {{o}};
  const int ws_rows = static_cast<int>(o_.traits.attn_workspace_rows);
  if (ws_rows > 0) {  // the backend's scratch for one tile of scores
    int ws = g_.add_tensor({lp + "attn.workspace", TensorKind::Activation, ElemType::F32,
                            SymDim::constant(ws_rows), kv_rows});
    outs.push_back({ws, true});
  }
  std::vector<Operand> in = {{q}};
  in.insert(in.end(), kv.begin(), kv.end());
  // Block-causal: the queries' positions are the rows' (explicit past the last layer's head rows).
  const bool block_causal = o_.attention_block > 0;
  if (block_causal && positions_ >= 0) in.push_back({positions_});
  if (o_.packed) {  // each query's own sequence's keys
    const bool head = rows_ == M;
    in.push_back({head ? head_key_lo_ : key_lo_});
    in.push_back({head ? head_key_hi_ : key_hi_});
  }
  Node n{Op::Attention, std::move(in), outs};
  n.block = o_.attention_block;
  n.has_positions = block_causal && positions_ >= 0;
  n.has_key_ranges = o_.packed;
  n.heads = static_cast<int>(c_.n_heads);
  n.kv_heads = static_cast<int>(c_.n_kv_heads);
  n.head_dim = static_cast<int>(c_.head_dim);
  n.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c_.head_dim)));
  n.layer = l;
  g_.add_node(n);
  residual_matmul(o, weight(w.out, d(), qd()), x_);
  g_.end_region();
}

// Ulysses: this rank's rows of every head (q, K, V) become every rank's rows of this rank's group
// of heads, which attend there as on one device (the rows in order are the sequence's positions);
// the output goes back to the rows' ranks, which project it. The masked last layer keeps every
// row through the attention and only the head rows after it.
void StepGraphBuilder::attention_by_heads(int l, int q, int K, int V, int wo) {
  const SymDim L = SymDim::tokens(), all = SymDim::cache();
  const std::string lp = fmt::format("{}layer{}.", pfx_, l);
  const parallel::HeadGroups groups =
      parallel::shard_heads(static_cast<int>(c_.n_heads), static_cast<int>(c_.n_kv_heads), o_.ranks);
  const int heads = static_cast<int>(groups.heads[0].count), kv_heads = static_cast<int>(groups.kv_heads[0].count);
  const int64_t hd = c_.head_dim, gq = heads * hd, gkv = kv_heads * hd;
  auto exchange = [&](Op op, int x, int y, const std::string& name, int64_t group) {
    int staging = act(lp + name + ".staging", L, group * o_.ranks);
    Node n{op, {{x, true}}, {{y, true}, {staging, true}}};
    n.heads = static_cast<int>(c_.n_heads);
    n.kv_heads = static_cast<int>(c_.n_kv_heads);
    n.head_dim = static_cast<int>(hd);
    n.layer = l;
    g_.add_node(n);
  };
  int qh = act(lp + "q_heads", all, gq), kh = act(lp + "k_heads", all, gkv), vh = act(lp + "v_heads", all, gkv);
  g_.begin_region({lp + "attn_to_heads", L, false});
  exchange(Op::RowsToHeads, q, qh, "q", gq);
  exchange(Op::RowsToHeads, K, kh, "k", gkv);
  exchange(Op::RowsToHeads, V, vh, "v", gkv);
  g_.end_region();

  int oh = act(lp + "attn_heads", all, gq);
  g_.begin_region({lp + "attn_heads", all, true});
  std::vector<Operand> outs = {{oh}};
  if (o_.traits.attn_workspace_rows > 0)
    outs.push_back({g_.add_tensor({lp + "attn.workspace", TensorKind::Activation, ElemType::F32,
                                   SymDim::constant(o_.traits.attn_workspace_rows), all}),
                    true});
  Node n{Op::Attention, {{qh}, {kh, true}, {vh, true}}, outs};
  n.block = o_.attention_block;
  n.heads = heads;
  n.kv_heads = kv_heads;
  n.head_dim = static_cast<int>(hd);
  n.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  n.layer = l;
  g_.add_node(n);
  g_.end_region();

  int o = act(lp + "attn", L, qd());
  g_.begin_region({lp + "attn_to_rows", L, false});
  exchange(Op::HeadsToRows, oh, o, "attn", gq);
  g_.end_region();
  g_.begin_region({lp + "attn_out", L, true});
  residual_matmul(o, wo, x_);
  g_.end_region();

  const int end = o_.end_layer < 0 ? n_layers() : o_.end_layer;
  if (o_.masked_last_layer && l == n_layers() - 1 && end == n_layers()) {
    x_ = gather_head_rows(x_, pfx_);
    rows_ = SymDim::masked();
    positions_ = head_row_pos_;
  }
}

// Sparse-dLLM's eviction, on the store step: the block's queries (recomputed for its B rows:
// the attention below may run on fewer) score every position outside the block, and the
// cache keeps the best int((L - B) * keep) of them, in order.
void StepGraphBuilder::select_cache(int l, int attn_norm, int wq, int bq, const std::string& q_norm, int K, int V,
                                    int kc, int vc) {
  const std::string lp = fmt::format("{}layer{}.", pfx_, l);
  const int64_t hq = c_.n_heads * c_.head_dim;
  int scores = g_.add_tensor({lp + "select.scores", TensorKind::Activation, ElemType::F32,
                              SymDim{hq, 1, 0, 0, -1}, SymDim::constant(1)});
  int kept = g_.add_tensor({lp + "select.kept", TensorKind::Activation, ElemType::I32, SymDim{0, 1, 0, 0, -1},
                            SymDim::constant(1)});
  int r = g_.begin_region({lp + "cache_select", SymDim::block(), false});
  int xb = local(lp + "select.hidden", r, d());
  int qb = local(lp + "select.q", r, hq);
  node(Op::GatherRows, {{x_, true}, {block_rows_}}, {{xb}});
  node(Op::RmsNorm, {{xb}, {attn_norm}}, {{xb}}, c_.rms_eps);
  matmul(xb, wq, bq, qb);
  if (!q_norm.empty()) head_norm(qb, static_cast<int>(c_.n_heads), q_norm);
  rope(qb, static_cast<int>(c_.n_heads), block_rows_);
  Node n{Op::CacheSelect, {{qb, true}, {K, true}, {V, true}, {outside_rows_, true}},
         {{kc, true}, {vc, true}, {scores, true}, {kept, true}}};
  n.heads = static_cast<int>(c_.n_heads);
  n.kv_heads = static_cast<int>(c_.n_kv_heads);
  n.head_dim = static_cast<int>(c_.head_dim);
  n.keep = o_.sparse_keep;
  n.kernel = o_.sparse_kernel;
  n.layer = l;
  g_.add_node(n);
  g_.end_region();
}

void StepGraphBuilder::dense_ffn(int l, const DenseFfnWeights& w) {
  const int64_t F = c_.ffn_hidden;
  const std::string lp = fmt::format("{}layer{}.", pfx_, l);
  int r = g_.begin_region({lp + "ffn", rows_, true});
  int h = local(lp + "ffn.hidden", r, d());
  int gate = local(lp + "ffn.gate", r, F), up = local(lp + "ffn.up", r, F);
  node(Op::RmsNorm, {{x_}, {vec_weight(w.norm, d())}}, {{h}}, c_.rms_eps);
  matmul(h, weight(w.gate, F, d()), -1, gate);
  matmul(h, weight(w.up, F, d()), -1, up);
  node(Op::SwiGlu, {{gate}, {up}}, {{gate}});
  residual_matmul(gate, weight(w.down, d(), F), x_);
  g_.end_region();
}

void MoeFfnWeights::name_experts(const std::string& prefix, int64_t n) {
  for (int64_t e = 0; e < n; ++e) {
    gate.push_back(fmt::format("{}{}.gate_proj.weight", prefix, e));
    up.push_back(fmt::format("{}{}.up_proj.weight", prefix, e));
    down.push_back(fmt::format("{}{}.down_proj.weight", prefix, e));
  }
}

int64_t moe_workspace_floats(const io::ModelConfig& c) {
  const int64_t d = c.d_model, F = c.moe.ffn_hidden, k = c.moe.experts_per_token;
  // Expert by expert (the CPU, the fp32 mode): one expert's rows at a time, at most every row of
  // the chunk, and the rows' expert-sorted indices and weights.
  const int64_t one_by_one = 2 * d + 2 * F + 2 * k;
  // Grouped (CUDA bf16): every (row, expert) pair's slot and source row (2 ints), its SwiGLU
  // activations and its output row (bf16), + 192 floats per row for the parts' 256-byte alignment.
  const int64_t grouped = 2 * k + (k * (F + d) + 1) / 2 + 192;
  return std::max(one_by_one, grouped);
}

void StepGraphBuilder::moe_ffn(int l, const MoeFfnWeights& w) {
  const io::MoeConfig& m = c_.moe;
  const int k = static_cast<int>(m.experts_per_token);
  const std::string lp = fmt::format("{}layer{}.", pfx_, l);
  MOSAIC_CHECK(static_cast<int64_t>(w.gate.size()) == m.experts && w.up.size() == w.gate.size() &&
                   w.down.size() == w.gate.size(),
               "moe layer {}: {} experts' weights named for {} experts", l, w.gate.size(), m.experts);
  int r = g_.begin_region({lp + "moe", rows_, true});
  int h = local(lp + "moe.hidden", r, d());
  int ids = local(lp + "moe.ids", r, k, ElemType::I32);
  int wts = local(lp + "moe.weights", r, k, ElemType::F32);
  int logits = local(lp + "moe.logits", r, m.experts, ElemType::F32);
  node(Op::RmsNorm, {{x_}, {vec_weight(w.norm, d())}}, {{h}}, c_.rms_eps);
  std::vector<Operand> route_in = {{h}, {weight(w.router, m.experts, d())}};
  if (!w.router_bias.empty()) route_in.push_back({vec_weight(w.router_bias, m.experts)});
  Node route{Op::MoeRoute, std::move(route_in), {{ids}, {wts}, {logits}}};
  route.moe = {m.sigmoid_groups ? Router::SigmoidGroups : Router::Softmax, static_cast<int>(m.experts), k,
               static_cast<int>(m.groups), static_cast<int>(m.top_groups), m.renormalize,
               static_cast<float>(m.routed_scale)};
  route.layer = l;
  g_.add_node(std::move(route));
  int ws = local(lp + "moe.workspace", r, moe_workspace_floats(c_), ElemType::F32);
  std::vector<Operand> in = {{h}, {ids}, {wts}};
  for (int64_t e = 0; e < m.experts; ++e) {
    in.push_back({weight(w.gate[e], m.ffn_hidden, d())});
    in.push_back({weight(w.up[e], m.ffn_hidden, d())});
    in.push_back({weight(w.down[e], d(), m.ffn_hidden)});
  }
  Node experts{Op::MoeExperts, std::move(in), {{x_}, {ws}}};
  experts.moe = g_.nodes.back().moe;
  experts.layer = l;
  g_.add_node(std::move(experts));
  if (!w.shared_gate.empty()) {
    const int64_t F = m.shared_ffn_hidden;
    int gate = local(lp + "moe.shared_gate", r, F), up = local(lp + "moe.shared_up", r, F);
    matmul(h, weight(w.shared_gate, F, d()), -1, gate);
    matmul(h, weight(w.shared_up, F, d()), -1, up);
    node(Op::SwiGlu, {{gate}, {up}}, {{gate}});
    residual_matmul(gate, weight(w.shared_down, d(), F), x_);
  }
  g_.end_region();
}

int StepGraphBuilder::gather_head_rows(int x, const std::string& pfx) {
  const SymDim M = SymDim::masked();
  int xm = act(pfx + "x_head_rows", M, d());
  g_.begin_region({pfx + "gather_head_rows", M, true});
  node(Op::GatherRows, {{x, true}, {head_rows_}}, {{xm}});
  g_.end_region();
  return xm;
}

int StepGraphBuilder::input(const std::string& name, SymDim rows) {
  return g_.add_tensor({name, TensorKind::Input, ElemType::I32, rows, SymDim::constant(1)});
}
int StepGraphBuilder::output(const std::string& name, SymDim rows, SymDim cols, ElemType e) {
  return g_.add_tensor({name, TensorKind::Output, e, rows, cols});
}
int StepGraphBuilder::act(const std::string& name, SymDim rows, int64_t cols) {
  return g_.add_tensor({name, TensorKind::Activation, ElemType::Act, rows, SymDim::constant(cols)});
}
int StepGraphBuilder::local(const std::string& name, int region, int64_t cols, ElemType e) {
  return g_.add_tensor({name, TensorKind::Activation, e, g_.regions[region].rows, SymDim::constant(cols), region});
}
int StepGraphBuilder::weight(const std::string& name, int64_t rows, int64_t cols, int64_t row0, int64_t full_rows) {
  TensorDesc t{name, TensorKind::Weight, ElemType::Act, SymDim::constant(rows), SymDim::constant(cols)};
  t.weight = name;
  t.weight_row0 = row0;
  t.weight_full_rows = full_rows;
  return g_.add_tensor(t);
}
int StepGraphBuilder::vec_weight(const std::string& name, int64_t n) {
  int t = weight(name, 1, n);
  g_.tensors[t].weight_is_vector = true;
  return t;
}
void StepGraphBuilder::node(Op op, std::vector<Operand> in, std::vector<Operand> out, float eps) {
  Node n{op, std::move(in), std::move(out)};
  n.eps = eps;
  g_.add_node(std::move(n));
}
void StepGraphBuilder::matmul(int a, int w, int bias, int c) {
  std::vector<Operand> in = {{a}, {w}};
  if (bias >= 0) in.push_back({bias});
  node(Op::MatMul, std::move(in), {{c}});
}
// x += a w^T: the residual add in the product's epilogue.
void StepGraphBuilder::residual_matmul(int a, int w, int x) {
  Node n{Op::MatMul, {{a}, {w}}, {{x}}};
  n.accumulate = true;
  g_.add_node(std::move(n));
}
// RMSNorm of each head's head_dim values (a [head_dim] weight shared by the heads), in place.
void StepGraphBuilder::head_norm(int t, int heads, const std::string& w) {
  Node n{Op::RmsNorm, {{t}, {vec_weight(w, c_.head_dim)}}, {{t}}};
  n.eps = c_.rms_eps;
  n.heads = heads;
  n.head_dim = static_cast<int>(c_.head_dim);
  g_.add_node(std::move(n));
}

void StepGraphBuilder::rope(int t, int heads, int positions) {
  Node n{Op::Rope, {{t}}, {{t}}};
  if (positions >= 0) n.in.push_back({positions});
  n.heads = heads;
  n.head_dim = static_cast<int>(c_.head_dim);
  n.rotary_dim = static_cast<int>(c_.rotary_dim);
  n.theta = c_.rope_theta;
  g_.add_node(std::move(n));
}

}  // namespace mosaic
