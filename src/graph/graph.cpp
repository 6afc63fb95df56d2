#include "graph/graph.h"

#include <fmt/format.h>

#include "core/error.h"

namespace mosaic {

std::string SymDim::str() const {
  std::string s;
  auto term = [&](int64_t k, const char* sym) {
    if (k == 0) return;
    if (!s.empty()) s += k > 0 ? "+" : "-";
    else if (k < 0) s += "-";
    int64_t a = k < 0 ? -k : k;
    s += *sym ? (a == 1 ? std::string(sym) : fmt::format("{}{}", a, sym)) : fmt::format("{}", a);
  };
  term(l, "L");
  term(m, "M");
  term(k, "K");
  term(b, "B");
  term(c, "");
  return s.empty() ? "0" : s;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed: return "embed";
    case Op::RmsNorm: return "rms_norm";
    case Op::MatMul: return "matmul";
    case Op::Rope: return "rope";
    case Op::Attention: return "attention";
    case Op::SwiGlu: return "swiglu";
    case Op::GatherRows: return "gather_rows";
    case Op::SampleRows: return "sample_rows";
    case Op::CfgCombine: return "cfg_combine";
    case Op::RankRows: return "rank_rows";
    case Op::ScatterRows: return "scatter_rows";
    case Op::CacheSelect: return "cache_select";
    case Op::MoeRoute: return "moe_route";
    case Op::MoeExperts: return "moe_experts";
    case Op::AllGatherRows: return "all_gather_rows";
    case Op::RowsToHeads: return "rows_to_heads";
    case Op::HeadsToRows: return "heads_to_rows";
  }
  return "?";
}

size_t elem_size(ElemType e, size_t act_size) {
  switch (e) {
    case ElemType::Act: return act_size;
    case ElemType::F32: return 4;
    case ElemType::I32: return 4;
  }
  return 0;
}

int Graph::add_tensor(TensorDesc t) {
  tensors.push_back(std::move(t));
  return static_cast<int>(tensors.size()) - 1;
}

int Graph::begin_region(Region r) {
  MOSAIC_CHECK(open_region < 0, "graph builder: region '{}' opened inside '{}'", r.name,
               regions[open_region].name);
  r.first = static_cast<int>(nodes.size());
  r.last = r.first - 1;
  regions.push_back(std::move(r));
  open_region = static_cast<int>(regions.size()) - 1;
  return open_region;
}

void Graph::end_region() {
  MOSAIC_CHECK(open_region >= 0, "graph builder: end_region without an open region");
  regions[open_region].last = static_cast<int>(nodes.size()) - 1;
  open_region = -1;
}

int Graph::add_node(Node n) {
  MOSAIC_CHECK(open_region >= 0, "graph builder: node '{}' outside any region", op_name(n.op));
  n.region = open_region;
  nodes.push_back(std::move(n));
  return static_cast<int>(nodes.size()) - 1;
}

std::string region_kind(const std::string& region_name) {
  const auto dot = region_name.rfind('.');
  return dot == std::string::npos ? region_name : region_name.substr(dot + 1);
}

int64_t Graph::chunk_rows(int region, const Dims& d, int64_t planned) const {
  const int64_t rows = regions[region].rows.eval(d);
  return planned <= 0 || planned >= rows ? rows : planned;
}

int64_t Graph::chunk_count(int region, const Dims& d, int64_t planned) const {
  const int64_t rows = regions[region].rows.eval(d), cr = chunk_rows(region, d, planned);
  return cr <= 0 ? 1 : (rows + cr - 1) / cr;
}

std::vector<int64_t> Graph::rows_for_counts(const Dims& d, const std::vector<int>& counts) const {
  std::vector<int64_t> cr(regions.size(), 0);
  for (size_t r = 0; r < regions.size(); ++r) {
    const int64_t rows = regions[r].rows.eval(d);
    if (counts[r] > 1 && rows > 0) cr[r] = (rows + counts[r] - 1) / counts[r];
  }
  return cr;
}

int64_t Graph::rows_of(int t, const Dims& d, const std::vector<int64_t>& chunk_rows_of) const {
  const TensorDesc& td = tensors[t];
  if (td.region >= 0) return chunk_rows(td.region, d, chunk_rows_of[td.region]);
  return td.rows.eval(d);
}

void Graph::validate() const {
  MOSAIC_CHECK(open_region < 0, "graph: region '{}' never closed", regions[open_region].name);
  std::vector<bool> defined(tensors.size(), false);
  for (const TensorDesc& td : tensors)
    if (td.kind == TensorKind::Persistent)
      MOSAIC_CHECK(td.region < 0 && td.rows.is_per_generation() && td.cols.is_per_generation(),
                   "graph: persistent tensor '{}' must have rows and columns constant within a generation (in K) "
                   "and no region: its offset and contents must survive from one step's plan to the next", td.name);
  for (size_t t = 0; t < tensors.size(); ++t)
    defined[t] = tensors[t].kind == TensorKind::Input || tensors[t].kind == TensorKind::InOut ||
                 tensors[t].kind == TensorKind::Weight || tensors[t].kind == TensorKind::Persistent;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    MOSAIC_CHECK(n.region >= 0 && n.region < static_cast<int>(regions.size()),
                 "graph: node {} has no region", i);
    const Region& r = regions[n.region];
    MOSAIC_CHECK(static_cast<int>(i) >= r.first && static_cast<int>(i) <= r.last,
                 "graph: node {} outside its region's range", i);
    auto check = [&](const Operand& o, bool is_out) {
      MOSAIC_CHECK(o.tensor >= 0 && o.tensor < static_cast<int>(tensors.size()),
                   "graph: node {} ({}) has operand {} out of range", i, op_name(n.op), o.tensor);
      const TensorDesc& td = tensors[o.tensor];
      MOSAIC_CHECK(td.region < 0 || td.region == n.region,
                   "graph: node {} ({}) uses '{}' local to another region", i, op_name(n.op), td.name);
      // A persistent cache may be written in row slices by a region over fewer symbolic rows
      // (a first step's L rows into a cache of K >= L); the executor checks the bounds.
      if (td.region < 0 && !o.whole && td.kind != TensorKind::Weight && td.kind != TensorKind::Persistent)
        MOSAIC_CHECK(td.rows == r.rows, "graph: node {} ({}) slices '{}' (rows {}) by region '{}' rows {}",
                     i, op_name(n.op), td.name, td.rows.str(), r.name, r.rows.str());
      if (!is_out)
        MOSAIC_CHECK(defined[o.tensor], "graph: node {} ({}) reads '{}' before it is written", i,
                     op_name(n.op), td.name);
    };
    for (const auto& o : n.in) check(o, false);
    if (n.accumulate) {
      MOSAIC_CHECK(n.op == Op::MatMul && n.out.size() == 1, "graph: node {} ({}) accumulates but is no product", i,
                   op_name(n.op));
      check(n.out[0], false);  // read before it is written
    }
    for (const auto& o : n.out) {
      check(o, true);
      defined[o.tensor] = true;
    }
  }
}

}  // namespace mosaic
