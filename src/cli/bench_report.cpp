// mosaic bench's output: the table on stdout, the --json document, the --profile timeline
// and the --op-times report.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "cli/bench_internal.h"
#include "core/error.h"
#include "core/format.h"
#include "plan/cost_model.h"

namespace mosaic::cli {

namespace {

int64_t pos_of(const Measured& r, int32_t row) { return r.pos0 + row; }

}  // namespace

// The step's time by kind of node, largest first, from one extra step that waits for the
// device after every node.
nlohmann::json print_op_times(const OpTimes& t) {
  std::vector<std::pair<std::string, OpTime>> v(t.begin(), t.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (const auto& [k, o] : v) total += o.ms;
  fmt::print("  {:<40} {:>7} {:>10} {:>7} {:>8}\n", "node kind (region, op, product)", "calls", "ms", "share", "TFLOP/s");
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [k, o] : v) {
    const double tf = o.flops > 0 && o.ms > 0 ? o.flops / (o.ms * 1e-3) / 1e12 : 0.0;
    fmt::print("  {:<40} {:>7} {:>10.2f} {:>6.1f}% {:>8}\n", k, o.calls, o.ms, 100.0 * o.ms / total,
               tf > 0 ? fmt::format("{:.1f}", tf) : "");
    j.push_back({{"kind", k}, {"calls", o.calls}, {"ms", o.ms}, {"flops", o.flops}});
  }
  fmt::print("  {:<40} {:>7} {:>10.2f}   (per-node synchronized; the step's own time is above)\n", "total", "", total);
  return j;
}

namespace {

std::string chunk_summary(const Graph& g, const std::vector<int>& chunks) {
  std::map<std::string, int> most;
  for (size_t r = 0; r < chunks.size(); ++r) {
    if (chunks[r] <= 1) continue;
    const std::string kind = region_kind(g.regions[r].name);
    most[kind] = std::max(most[kind], chunks[r]);
  }
  if (most.empty()) return "none";
  std::string s;
  for (const auto& [k, c] : most) s += fmt::format("{}{}:{}", s.empty() ? "" : " ", k, c);
  return s;
}

}  // namespace

nlohmann::json run_description(Session& s, const BenchFlags& f, const Segment& seg) {
  Model& m = s.model();
  nlohmann::json out;
  out["model"] = m.dir();
  out["backend"] = s.backend_name();
  out["gpus"] = rank_devices(f.session).size();
  out["devices"] = rank_devices(f.session);
  if (m.ranks() > 0) out["exchange"] = parallel::exchange_name(m.exchange());
  out["layers_run"] = f.layers > 0 ? f.layers : seg.end - seg.first;
  if (!f.segment.empty()) out["segment"] = {seg.first, seg.end};
  out["n_layers"] = m.config().n_layers;
  out["weights_bytes"] = s.backend().weight_bytes();
  out["activation_budget"] = m.activation_budget();
  out["chunk_min_rows"] = m.chunk_min_rows();
  out["tame_target"] = m.tame_target();
  return out;
}

void print_table_header() {
  fmt::print("{:>9} {:>5} {:>10} {:>8} {:>11} {:>11} {:>11} {:>8} {:>11} {:>11}  {}\n", "tokens", "M", "ms/step",
             "TFLOP/s", "arena", "peak live", "avg live", "pk/avg", "mapped", "device", "chunks");
}

// One length's row (and --op-times report); returns its entry of the JSON "results".
nlohmann::json report_result(Model& m, const Measured& r, bool op_times) {
  nlohmann::json jr = {{"tokens", r.L}, {"masked", r.M}};
  if (!r.error.empty()) {
    fmt::print("{:>9} {:>5}  failed: {}\n", r.L, r.M, r.error);
    jr["error"] = r.error;
    return jr;
  }
  const Graph& g = m.graph();
  fmt::print("{:>9} {:>5} {:>10.2f} {:>8.1f} {:>11} {:>11} {:>11} {:>8.3f} {:>11} {:>11}  {}\n", r.L, r.M,
             r.median_ms, r.tflops, human_bytes(static_cast<double>(r.arena)),
             human_bytes(static_cast<double>(r.peak_live)), human_bytes(r.avg_live),
             r.avg_live > 0 ? r.peak_live / r.avg_live : 0.0, human_bytes(static_cast<double>(r.mapped)),
             human_bytes(static_cast<double>(r.device_peak)), chunk_summary(g, r.chunks));
  jr.update({{"ms_per_step", r.median_ms}, {"ms_all", r.ms}, {"tflops", r.tflops}, {"arena_bytes", r.arena},
             {"peak_live_bytes", r.peak_live}, {"avg_live_bytes", r.avg_live}, {"mapped_bytes", r.mapped},
             {"device_peak_bytes", r.device_peak}, {"chunks", chunk_summary(g, r.chunks)},
             {"tame_floor", m.plan(r.dims).tame_floor}});
  if (op_times) jr["op_times"] = print_op_times(r.op_times);
  return jr;
}

nlohmann::json report_first_commit(const Measured& r) {
  const int32_t i = r.last.order.front();
  fmt::print("  most confident masked row: position {} -> token {} (confidence {:.4g})\n", pos_of(r, i),
             r.last.token[i], r.last.conf[i]);
  return {{"position", pos_of(r, i)}, {"token", r.last.token[i]}, {"confidence", r.last.conf[i]}};
}

void write_profile(const std::string& path, const Graph& g, const MemoryPlan& p) {
  std::ofstream out(path);
  MOSAIC_CHECK(out.good(), "--profile: cannot write '{}'", path);
  const bool csv = path.size() > 4 && path.substr(path.size() - 4) == ".csv";
  if (csv) {
    out << "node,region,op,live_bytes\n";
    for (size_t i = 0; i < g.nodes.size(); ++i)
      out << i << "," << g.regions[g.nodes[i].region].name << "," << op_name(g.nodes[i].op) << "," << p.live[i] << "\n";
    return;
  }
  nlohmann::json j;
  j["L"] = p.dims.L;
  j["M"] = p.dims.M;
  j["arena_bytes"] = p.arena_bytes();
  j["peak_live_bytes"] = p.peak_live;
  j["avg_live_bytes"] = p.avg_live_timed;
  j["avg_live_bytes_per_node"] = p.avg_live;
  const std::vector<double> cost = node_costs(g, p.dims, p.act_size);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    j["timeline"].push_back({{"node", i}, {"region", g.regions[g.nodes[i].region].name},
                             {"op", op_name(g.nodes[i].op)}, {"live_bytes", p.live[i]}, {"modeled_cost", cost[i]}});
  out << j.dump(1) << "\n";
}

void write_json(const std::string& path, const nlohmann::json& out) {
  std::ofstream j(path);
  MOSAIC_CHECK(j.good(), "--json: cannot write '{}'", path);
  j << out.dump(2) << "\n";
}

}  // namespace mosaic::cli
