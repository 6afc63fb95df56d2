#include "backend/executor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdlib>

#include "core/dtype.h"
#include "core/error.h"
#include "offload/expert_offload.h"
#include "offload/routing_replay.h"
#include "parallel/communicator.h"
#include "parallel/sequence_shards.h"
#include "plan/cost_model.h"

namespace mosaic {

Executor::Executor(Backend& be, const Graph& g, std::vector<const void*> weights)
    : be_(be), g_(g), weights_(std::move(weights)) {
  MOSAIC_CHECK(weights_.size() == g.tensors.size(), "executor: {} weight slots for {} tensors",
               weights_.size(), g.tensors.size());
  for (size_t t = 0; t < g.tensors.size(); ++t)
    if (g.tensors[t].kind == TensorKind::Weight)
      MOSAIC_CHECK(weights_[t] != nullptr, "executor: weight '{}' is not loaded", g.tensors[t].weight);
  const char* tr = std::getenv("MOSAIC_TRACE");
  trace_ = tr && *tr && *tr != '0';
  // MOSAIC_BATCH_ATTENTION=per-sequence: a batch's attention one call per sequence even where
  // the backend takes key ranges (for comparing the two).
  const char* ba = std::getenv("MOSAIC_BATCH_ATTENTION");
  per_sequence_attention_ = ba && std::string(ba) == "per-sequence";
}

Executor::View Executor::view(const Operand& o, const MemoryPlan& plan, int64_t r0, int64_t n_rows) const {
  const TensorDesc& td = g_.tensors[o.tensor];
  int64_t cols = td.cols.eval(plan.dims);
  if (td.kind == TensorKind::Weight) {
    int64_t rows = td.rows.eval(plan.dims);
    return {const_cast<void*>(weights_[o.tensor]), rows, cols};
  }
  std::byte* base = be_.arena() + plan.placement.offset[o.tensor];
  if (td.region >= 0) return {base, n_rows, cols};
  if (o.whole) return {base, td.rows.eval(plan.dims), cols};
  if (td.kind == TensorKind::Persistent)
    MOSAIC_CHECK(r0 + n_rows <= td.rows.eval(plan.dims), "executor: rows {}..{} of '{}' are past its {} rows", r0,
                 r0 + n_rows, td.name, td.rows.eval(plan.dims));
  size_t esize = elem_size(td.elem, plan.act_size);
  return {base + static_cast<size_t>(r0 * cols) * esize, n_rows, cols};
}

const std::vector<std::byte>& OutputBuffers::at(const std::string& name) const {
  auto it = bytes.find(name);
  MOSAIC_CHECK(it != bytes.end(), "step output '{}' was not produced by this graph", name);
  return it->second;
}

namespace {

size_t tensor_bytes(const TensorDesc& td, const MemoryPlan& plan) {
  return static_cast<size_t>(std::max<int64_t>(td.rows.eval(plan.dims), 0) *
                             std::max<int64_t>(td.cols.eval(plan.dims), 0)) *
         elem_size(td.elem, plan.act_size);
}

}  // namespace

void Executor::run(const MemoryPlan& plan, const InputBindings& in, const SampleParams& sp, OutputBuffers* out,
                   const StepLayout* layout) {
  layout_ = layout;
  MOSAIC_CHECK(be_.arena_mapped_bytes() >= plan.arena_bytes(), "executor: arena of {} B is smaller than the plan's {} B",
               be_.arena_mapped_bytes(), plan.arena_bytes());
  for (size_t t = 0; t < g_.tensors.size(); ++t) {
    const TensorDesc& td = g_.tensors[t];
    if ((td.kind != TensorKind::Input && td.kind != TensorKind::InOut) || !plan.life[t].planned()) continue;
    auto it = in.find(td.name);
    MOSAIC_CHECK(it != in.end(), "executor: graph input '{}' was not provided", td.name);
    const size_t bytes = tensor_bytes(td, plan);
    MOSAIC_CHECK(it->second.bytes == bytes, "executor: input '{}' has {} B, this step's plan expects {} B", td.name,
                 it->second.bytes, bytes);
    if (bytes > 0) be_.upload(be_.arena() + plan.placement.offset[t], it->second.data, bytes);
  }

  for (size_t r = 0; r < g_.regions.size(); ++r) {
    const Region& reg = g_.regions[r];
    const int64_t rows = reg.rows.eval(plan.dims);
    if (rows <= 0) continue;
    const int64_t cr = g_.chunk_rows(static_cast<int>(r), plan.dims, plan.chunk_rows[r]);
    for (int64_t r0 = 0; r0 < rows; r0 += cr) {
      const int64_t n = std::min(cr, rows - r0);
      for (int i = reg.first; i <= reg.last; ++i) {
        if (op_times_) {
          timed_exec(i, plan, r0, n, sp);
        } else {
          exec(g_.nodes[i], plan, r0, n, sp);
        }
        if (trace_) trace(i, plan, r0, n);
      }
    }
  }

  out->bytes.clear();
  for (size_t t = 0; t < g_.tensors.size(); ++t) {
    const TensorDesc& td = g_.tensors[t];
    if ((td.kind != TensorKind::Output && td.kind != TensorKind::InOut) || !plan.life[t].planned()) continue;
    std::vector<std::byte>& dst = out->bytes[td.name];
    dst.resize(tensor_bytes(td, plan));
    if (!dst.empty()) be_.download(dst.data(), be_.arena() + plan.placement.offset[t], dst.size());
  }
  be_.synchronize();
}

void Executor::timed_exec(int i, const MemoryPlan& plan, int64_t r0, int64_t rows, const SampleParams& sp) {
  const Node& n = g_.nodes[i];
  std::string key = fmt::format("{:<16} {}", region_kind(g_.regions[n.region].name), op_name(n.op));
  if (n.op == Op::MatMul)
    key += fmt::format(" {}->{}", region_kind(g_.tensors[n.in[0].tensor].name),
                       region_kind(g_.tensors[n.out[0].tensor].name));
  be_.synchronize();
  auto t0 = std::chrono::steady_clock::now();
  exec(n, plan, r0, rows, sp);
  be_.synchronize();
  OpTime& t = (*op_times_)[key];
  t.calls += 1;
  t.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  t.flops += node_flops(g_, n, plan.dims, static_cast<double>(rows));
}

// MOSAIC_TRACE=1: after each node, the first values and the sum of its first output
// (for comparing a step against the reference layer by layer).
void Executor::trace(int i, const MemoryPlan& plan, int64_t r0, int64_t rows) {
  const Node& n = g_.nodes[i];
  View v = view(n.out[0], plan, r0, rows);
  const TensorDesc& td = g_.tensors[n.out[0].tensor];
  const size_t count = static_cast<size_t>(v.rows * v.cols);
  std::vector<float> f(count);
  if (td.elem == ElemType::I32) {
    std::vector<int32_t> iv(count);
    be_.download(iv.data(), v.p, count * 4);
    be_.synchronize();
    for (size_t k = 0; k < count; ++k) f[k] = static_cast<float>(iv[k]);
  } else if (elem_size(td.elem, plan.act_size) == 2) {
    std::vector<uint16_t> h(count);
    be_.download(h.data(), v.p, count * 2);
    be_.synchronize();
    for (size_t k = 0; k < count; ++k) f[k] = bf16_to_f32(h[k]);
  } else {
    be_.download(f.data(), v.p, count * 4);
    be_.synchronize();
  }
  double sum = 0;
  for (float x : f) sum += x;
  fmt::print(stderr, "trace node {:4} {:<12} {:<22} rows {}+{} sum {:.6g} first [{}]\n", i, op_name(n.op), td.name, r0,
             rows, sum, fmt::join(f.begin(), f.begin() + std::min<size_t>(4, count), ", "));
}

void Executor::exec(const Node& n, const MemoryPlan& plan, int64_t r0, int64_t rows, const SampleParams& sp) {
  if (layout_ && (n.op == Op::Attention || n.op == Op::SampleRows || n.op == Op::CfgCombine || n.op == Op::RankRows)) {
    exec_packed(n, plan, r0, rows);
    return;
  }
  auto in = [&](size_t i) { return view(n.in.at(i), plan, r0, rows); };
  auto out = [&](size_t i) { return view(n.out.at(i), plan, r0, rows); };
  switch (n.op) {
    case Op::Embed: {
      View ids = in(0), table = in(1), x = out(0);
      be_.embed(static_cast<const int32_t*>(ids.p), rows, table.p, x.cols, x.p);
      break;
    }
    case Op::RmsNorm: {
      View x = in(0), w = in(1), y = out(0);
      if (n.heads > 0)  // per head: the rows' heads are rows of head_dim
        be_.rms_norm(x.p, rows * n.heads, n.head_dim, w.p, n.eps, y.p);
      else
        be_.rms_norm(x.p, rows, x.cols, w.p, n.eps, y.p);
      break;
    }
    case Op::MatMul: {
      View a = in(0), w = in(1), c = out(0);
      const void* bias = n.in.size() > 2 ? in(2).p : nullptr;
      be_.matmul(a.p, rows, a.cols, w.p, bias, w.rows, c.p, g_.tensors[n.out[0].tensor].elem, n.accumulate);
      break;
    }
    case Op::Rope: {
      const void* pos = n.in.size() > 1 ? in(1).p : nullptr;
      be_.rope(out(0).p, rows, n.heads, n.head_dim, n.rotary_dim > 0 ? n.rotary_dim : n.head_dim, r0, n.theta,
               static_cast<const int32_t*>(pos));
      break;
    }
    case Op::Attention: {
      View q = in(0), k = in(1), v = in(2), o = out(0);
      KvRows more;
      if (n.kv_inputs() > 2) more = {in(3).p, in(4).p, in(3).rows};
      AttentionMask mask{n.block, nullptr, r0};
      if (n.has_positions) mask.positions = static_cast<const int32_t*>(in(n.kv_inputs() + 1).p);
      void* ws = n.out.size() > 1 ? out(1).p : nullptr;
      be_.attention(q.p, rows, {k.p, v.p, k.rows}, more, n.heads, n.kv_heads, n.head_dim, n.scale, o.p, ws, mask);
      break;
    }
    case Op::SwiGlu: {
      View g = out(0), u = in(1);
      be_.swiglu(g.p, u.p, rows * g.cols);
      break;
    }
    case Op::GatherRows: {
      View x = in(0), idx = in(1), y = out(0);
      be_.gather_rows(x.p, x.cols, static_cast<const int32_t*>(idx.p), rows, y.p);
      break;
    }
    case Op::ScatterRows: {
      View x = in(0), idx = in(1), y = out(0);
      be_.scatter_rows(x.p, x.cols, static_cast<const int32_t*>(idx.p), rows, y.p);
      break;
    }
    case Op::CacheSelect: {
      View q = in(0), k = in(1), v = in(2), outside = in(3);
      View kc = out(0), vc = out(1), scores = out(2), kept = out(3);
      const int64_t keep = static_cast<int64_t>(static_cast<double>(outside.rows) * n.keep);
      MOSAIC_CHECK(keep <= kc.rows, "cache_select: {} rows kept, the cache holds {}", keep, kc.rows);
      be_.cache_select(q.p, q.rows, k.p, v.p, static_cast<const int32_t*>(outside.p), outside.rows, n.heads,
                       n.kv_heads, n.head_dim, n.kernel, keep, static_cast<float*>(scores.p),
                       static_cast<int32_t*>(kept.p), kc.p, vc.p);
      break;
    }
    case Op::MoeRoute: {
      View h = in(0), gate = in(1), ids = out(0), w = out(1), logits = out(2);
      const void* bias = n.in.size() > 2 ? in(2).p : nullptr;
      be_.moe_route(h.p, rows, h.cols, gate.p, bias, n.moe, static_cast<int32_t*>(ids.p), static_cast<float*>(w.p),
                    static_cast<float*>(logits.p));
      if (routing_tap_) {
        const size_t bytes = static_cast<size_t>(rows) * n.moe.top_k * sizeof(int32_t);
        tap_ids_.resize(bytes / sizeof(int32_t));
        be_.download(tap_ids_.data(), ids.p, bytes);
        be_.synchronize();
        routing_tap_->routed(n.layer, r0, rows, n.moe.top_k, tap_ids_.data());
        if (routing_tap_->rewrites()) be_.upload(ids.p, tap_ids_.data(), bytes);
      }
      break;
    }
    case Op::MoeExperts: {
      View h = in(0), ids = in(1), w = in(2), x = out(0), ws = out(1);
      std::vector<const void*> experts(n.in.size() - 3);
      for (size_t e = 3; e < n.in.size(); ++e) experts[e - 3] = in(e).p;
      const auto* id = static_cast<const int32_t*>(ids.p);
      const auto* wt = static_cast<const float*>(w.p);
      if (!offload_) {
        be_.moe_experts(h.p, rows, h.cols, id, wt, n.moe.top_k, in(3).rows, experts, x.p, ws.p);
        break;
      }
      // Offloaded: the routing, read back, decides where each expert runs this step (a refresh
      // may move some first, on the layer's first chunk only); the backend copies the promoted
      // experts into their slots and runs the resident ones on the device, the rest on the CPU.
      const size_t pairs = static_cast<size_t>(rows) * n.moe.top_k;
      host_ids_.resize(pairs);
      host_weights_.resize(pairs);
      be_.download(host_ids_.data(), id, pairs * sizeof(int32_t));
      be_.download(host_weights_.data(), wt, pairs * sizeof(float));
      be_.synchronize();
      const int n_experts = static_cast<int>(experts.size() / 3);
      const std::vector<offload::Swap> swaps = offload_->route(
          n.layer, offload::count_routes(host_ids_.data(), static_cast<int64_t>(pairs), n_experts), r0 == 0);
      if (!copies_) {  // statistics only: every expert is on the device
        be_.moe_experts(h.p, rows, h.cols, id, wt, n.moe.top_k, in(3).rows, experts, x.p, ws.p);
        break;
      }
      const offload::LayerPlacement& p = offload_->placement(n.layer);
      const std::vector<void*>& slots = copies_->slots.at(n.layer);
      on_gpu_.assign(static_cast<size_t>(n_experts), 0);
      device_.assign(experts.size(), nullptr);
      for (int e = 0; e < n_experts; ++e) {
        if (!p.resident(e)) continue;
        on_gpu_[e] = offload_->on_gpu(n.layer, e);
        for (int j = 0; j < 3; ++j) device_[3 * e + j] = slots[3 * p.slot_of(e) + j];
      }
      copy_in_.clear();
      copy_behind_.clear();
      for (const offload::Swap& s : swaps) (on_gpu_[s.promote] ? copy_in_ : copy_behind_).push_back(s.promote);
      OffloadedExperts o{host_ids_.data(), host_weights_.data(), &copies_->host.at(n.layer), &device_,
                         on_gpu_.data(), &copy_in_, &copy_behind_, n.layer};
      o.wait_landed = offload_->landed(n.layer);
      double cpu_seconds = 0;
      o.cpu_seconds = &cpu_seconds;
      be_.moe_experts_offloaded(h.p, rows, h.cols, id, wt, n.moe.top_k, in(3).rows, o, x.p, ws.p);
      offload_->observe_cpu(n.layer, cpu_seconds);
      break;
    }
    case Op::AllGatherRows: {
      View x = in(0), y = out(0);
      MOSAIC_CHECK(comm_ != nullptr, "executor: {} exchanges rows between ranks, and this step has no "
                   "communicator (a sharded step's)", n.label.empty() ? op_name(n.op) : n.label);
      const int ranks = comm_->size();
      const std::vector<parallel::Shard> shards = parallel::shard_rows(y.rows, ranks);
      const parallel::Shard& mine = shards[static_cast<size_t>(comm_->rank())];
      MOSAIC_CHECK(mine.count == x.rows, "executor: rank {} holds {} rows, its shard of {} is {} rows", comm_->rank(),
                   x.rows, y.rows, mine.count);
      const size_t row_bytes = static_cast<size_t>(x.cols) * elem_size(g_.tensors[n.in[0].tensor].elem, plan.act_size);
      std::vector<const void*> send(static_cast<size_t>(ranks), x.p);
      std::vector<size_t> send_bytes(static_cast<size_t>(ranks), static_cast<size_t>(x.rows) * row_bytes);
      std::vector<void*> recv;
      std::vector<size_t> recv_bytes;
      for (const parallel::Shard& s : shards) {
        recv.push_back(static_cast<std::byte*>(y.p) + static_cast<size_t>(s.begin) * row_bytes);
        recv_bytes.push_back(static_cast<size_t>(s.count) * row_bytes);
      }
      be_.synchronize();  // the rows sent are written (a communicator runs on its own stream)
      comm_->all_to_all(send, send_bytes, recv, recv_bytes);
      break;
    }
    case Op::RowsToHeads:
    case Op::HeadsToRows: {
      MOSAIC_CHECK(comm_ != nullptr, "executor: {} exchanges heads between ranks, and this step has no "
                   "communicator (a sharded step's)", n.label.empty() ? op_name(n.op) : n.label);
      exchange_heads(n, in(0), out(0), out(1), plan.act_size);
      break;
    }
    case Op::CfgCombine: {
      View c = out(0), u = in(1);
      be_.cfg_combine(static_cast<float*>(c.p), static_cast<const float*>(u.p), rows * c.cols, sp.cfg_scale);
      break;
    }
    case Op::RankRows: {
      View c = in(0), o = out(0);
      be_.rank_rows(static_cast<const float*>(c.p), c.rows, static_cast<int32_t*>(o.p));
      break;
    }
    case Op::SampleRows: {
      View l = in(0), pos = in(1), tok = out(0), conf = out(1);
      be_.sample_rows(static_cast<const float*>(l.p), rows, l.cols, static_cast<const int32_t*>(pos.p), sp,
                      static_cast<int32_t*>(tok.p), static_cast<float*>(conf.p));
      break;
    }
  }
}

// A batch's attention runs as one call when its sequences average at most this many query rows
// in the call (a cached step's block of 32), else one call per sequence.
constexpr int64_t kFewRowsPerSequence = 64;

// RowsToHeads: my rows of every head -> every rank's rows of my group of heads; HeadsToRows back.
// A group's columns are strided in a row of all heads: they are packed into (or unpacked from)
// staging, one contiguous block per peer, around the all-to-all.
void Executor::exchange_heads(const Node& n, View x, View y, View staging, size_t act_size) {
  const int ranks = comm_->size(), me = comm_->rank();
  const bool to_heads = n.op == Op::RowsToHeads;
  const View& rows_side = to_heads ? x : y;   // [my rows, all heads]
  const View& heads_side = to_heads ? y : x;  // [every rank's rows, my group]
  const std::vector<parallel::Shard> shards = parallel::shard_rows(heads_side.rows, ranks);
  const parallel::Shard& mine = shards[static_cast<size_t>(me)];
  MOSAIC_CHECK(mine.count == rows_side.rows, "executor: rank {} holds {} rows, its shard of {} is {} rows", me,
               rows_side.rows, heads_side.rows, mine.count);
  const parallel::HeadGroups groups = parallel::shard_heads(n.heads, n.kv_heads, ranks);
  const bool queries = rows_side.cols == static_cast<int64_t>(n.heads) * n.head_dim;
  const std::vector<parallel::Shard>& group = queries ? groups.heads : groups.kv_heads;
  const size_t es = elem_size(g_.tensors[n.in[0].tensor].elem, act_size);
  const size_t width = static_cast<size_t>(group[0].count * n.head_dim) * es;  // one row of one group
  const size_t row_pitch = static_cast<size_t>(rows_side.cols) * es, block = static_cast<size_t>(mine.count) * width;
  MOSAIC_CHECK(static_cast<size_t>(heads_side.cols) * es == width &&
                   static_cast<size_t>(staging.rows * staging.cols) * es >= block * static_cast<size_t>(ranks),
               "executor: {} of a [{}, {}] tensor does not match {} heads of {} over {} ranks", op_name(n.op),
               rows_side.rows, rows_side.cols, group[0].count, n.head_dim, ranks);
  auto column = [&](int r) {  // rank r's group's first column in a row of all heads
    return static_cast<size_t>(group[static_cast<size_t>(r)].begin * n.head_dim) * es;
  };
  std::byte* packed = static_cast<std::byte*>(staging.p);
  std::byte* whole = static_cast<std::byte*>(heads_side.p);
  std::vector<const void*> send;
  std::vector<void*> recv;
  std::vector<size_t> send_bytes, recv_bytes;
  for (int r = 0; r < ranks; ++r) {
    const parallel::Shard& s = shards[static_cast<size_t>(r)];
    std::byte* mine_of_r = packed + static_cast<size_t>(r) * block;    // my rows of r's group
    std::byte* r_of_mine = whole + static_cast<size_t>(s.begin) * width;  // r's rows of my group
    const size_t mine_bytes = block, r_bytes = static_cast<size_t>(s.count) * width;
    if (to_heads) {
      be_.copy_columns(mine_of_r, width, static_cast<const std::byte*>(x.p) + column(r), row_pitch, width, mine.count);
      send.push_back(mine_of_r), send_bytes.push_back(mine_bytes);
      recv.push_back(r_of_mine), recv_bytes.push_back(r_bytes);
    } else {
      send.push_back(r_of_mine), send_bytes.push_back(r_bytes);
      recv.push_back(mine_of_r), recv_bytes.push_back(mine_bytes);
    }
  }
  be_.synchronize();  // the rows sent are written (a communicator runs on its own stream)
  comm_->all_to_all(send, send_bytes, recv, recv_bytes);
  if (!to_heads)
    for (int r = 0; r < ranks; ++r)
      be_.copy_columns(static_cast<std::byte*>(y.p) + column(r), row_pitch, packed + static_cast<size_t>(r) * block,
                       width, width, mine.count);
}

void Executor::exec_packed(const Node& n, const MemoryPlan& plan, int64_t r0, int64_t rows) {
  auto in = [&](size_t i) { return view(n.in.at(i), plan, r0, rows); };
  auto out = [&](size_t i) { return view(n.out.at(i), plan, r0, rows); };
  auto esize = [&](const Operand& o) { return elem_size(g_.tensors[o.tensor].elem, plan.act_size); };
  // The head's nodes run on M rows; attention on L rows, or on M past the last layer's keys.
  const bool on_head_rows = g_.regions[n.region].rows == SymDim::masked();
  // This chunk's rows [r0, r0 + rows) that sequence s owns, as [a, b).
  auto piece = [&](const PackedSequence& s, int64_t& a, int64_t& b) {
    const int64_t begin = on_head_rows ? s.head0 : s.row0, count = on_head_rows ? s.heads : s.rows;
    a = std::max(r0, begin);
    b = std::min(r0 + rows, begin + count);
    return a < b;
  };
  auto at = [](const View& v, int64_t row, size_t es) {
    return static_cast<std::byte*>(v.p) + static_cast<size_t>(row * v.cols) * es;
  };
  switch (n.op) {
    case Op::Attention: {
      MOSAIC_CHECK(n.kv_inputs() == 2, "executor: a batched step reads its keys from one place (not a sparse cache)");
      View q = in(0), k = in(1), v = in(2), o = out(0);
      const int32_t* positions = n.has_positions ? static_cast<const int32_t*>(in(3).p) : nullptr;
      void* ws = n.out.size() > 1 ? out(1).p : nullptr;
      // Sequences with few rows here (a cached step's block) run in one call, each query reading
      // its own keys' range: one call per sequence would leave the GPU mostly idle. Long ones
      // (a block's first step) run one call each, on the backend's fastest kernel for them.
      int64_t seqs = 0, longest_keys = 0;
      for (const PackedSequence& s : *layout_) {
        int64_t a, b;
        if (piece(s, a, b)) ++seqs, longest_keys = std::max(longest_keys, s.keys);
      }
      const bool few_rows = seqs > 0 && rows <= kFewRowsPerSequence * seqs;
      if (n.has_key_ranges && !per_sequence_attention_ && few_rows && be_.attention_takes_key_ranges(n.head_dim)) {
        const size_t at_lo = 3 + (n.has_positions ? 1 : 0);
        AttentionMask mask;
        mask.key_lo = static_cast<const int32_t*>(in(at_lo).p);
        mask.key_hi = static_cast<const int32_t*>(in(at_lo + 1).p);
        mask.key_span = longest_keys;
        be_.attention(q.p, rows, {k.p, v.p, k.rows}, {}, n.heads, n.kv_heads, n.head_dim, n.scale, o.p, ws, mask);
        break;
      }
      const size_t qs = esize(n.in[0]), ks = esize(n.in[1]), os = esize(n.out[0]);
      for (const PackedSequence& s : *layout_) {
        int64_t a, b;
        if (!piece(s, a, b)) continue;
        MOSAIC_CHECK(s.key0 >= 0 && s.key0 + s.keys <= k.rows, "executor: a sequence's keys [{}, {}) are past the {} "
                     "keys", s.key0, s.key0 + s.keys, k.rows);
        const int64_t first = on_head_rows ? s.head0 : s.row0;
        AttentionMask mask{n.block, positions ? positions + (a - r0) : nullptr, a - first};
        be_.attention(at(q, a - r0, qs), b - a, {at(k, s.key0, ks), at(v, s.key0, ks), s.keys}, {}, n.heads,
                      n.kv_heads, n.head_dim, n.scale, at(o, a - r0, os), ws, mask);
      }
      break;
    }
    case Op::SampleRows: {
      // Consecutive sequences that sample alike (SampleParams::samples_like: greedy ones) share one call.
      View l = in(0), pos = in(1), tok = out(0), conf = out(1);
      auto sample = [&](int64_t a, int64_t b, const SampleParams& sp) {
        const int64_t i = a - r0;
        be_.sample_rows(static_cast<const float*>(l.p) + i * l.cols, b - a, l.cols,
                        static_cast<const int32_t*>(pos.p) + i, sp, static_cast<int32_t*>(tok.p) + i,
                        static_cast<float*>(conf.p) + i);
      };
      int64_t run_a = -1, run_b = -1;
      const SampleParams* run_sp = nullptr;
      for (const PackedSequence& s : *layout_) {
        int64_t a, b;
        if (!piece(s, a, b)) continue;
        if (run_sp && a == run_b && run_sp->samples_like(s.sample)) {
          run_b = b;
          continue;
        }
        if (run_sp) sample(run_a, run_b, *run_sp);
        run_a = a, run_b = b, run_sp = &s.sample;
      }
      if (run_sp) sample(run_a, run_b, *run_sp);
      break;
    }
    case Op::CfgCombine: {
      View c = out(0), u = in(1);
      for (const PackedSequence& s : *layout_) {
        int64_t a, b;
        if (!piece(s, a, b)) continue;
        const int64_t i = (a - r0) * c.cols;
        be_.cfg_combine(static_cast<float*>(c.p) + i, static_cast<const float*>(u.p) + i, (b - a) * c.cols,
                        s.sample.cfg_scale);
      }
      break;
    }
    case Op::RankRows: {  // the whole M rows at once (the rank region is not chunked), each sequence's apart
      View c = in(0), o = out(0);
      std::vector<Backend::RowRange> ranges;
      for (const PackedSequence& s : *layout_)
        if (s.heads > 0) ranges.push_back({s.head0, s.heads});
      be_.rank_rows_in_ranges(static_cast<const float*>(c.p), ranges, static_cast<int32_t*>(o.p));
      break;
    }
    default: MOSAIC_CHECK(false, "executor: {} has no batched form", op_name(n.op));
  }
}

}  // namespace mosaic
