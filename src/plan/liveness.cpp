#include "plan/liveness.h"

#include <algorithm>

namespace mosaic {

std::vector<Lifetime> compute_lifetimes(const Graph& g, const Dims& d, const std::vector<int64_t>& chunk_rows,
                                        size_t act_size) {
  std::vector<Lifetime> life(g.tensors.size());
  const int last_node = static_cast<int>(g.nodes.size()) - 1;
  std::vector<bool> chunked(g.regions.size());
  for (size_t r = 0; r < g.regions.size(); ++r) chunked[r] = g.chunk_count(static_cast<int>(r), d, chunk_rows[r]) > 1;
  auto touch = [&](int t, int node) {
    Lifetime& l = life[t];
    if (l.first < 0 || node < l.first) l.first = node;
    l.last = std::max(l.last, node);
  };
  for (int i = 0; i <= last_node; ++i) {
    const Node& n = g.nodes[i];
    const Region& r = g.regions[n.region];
    for (const auto* ops : {&n.in, &n.out})
      for (const Operand& o : *ops) {
        const TensorDesc& td = g.tensors[o.tensor];
        if (td.kind == TensorKind::Weight) continue;
        touch(o.tensor, i);
        // A chunked region revisits its first node after its last: a full tensor it
        // touches must survive the whole region, or a later chunk's locals would
        // overwrite what an earlier chunk wrote.
        if (chunked[n.region] && td.region < 0) {
          touch(o.tensor, r.first);
          touch(o.tensor, r.last);
        }
      }
  }
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const TensorDesc& td = g.tensors[t];
    Lifetime& l = life[t];
    if (td.kind == TensorKind::Persistent) {  // held whether or not this step touches it
      l.first = 0;
      l.last = last_node;
    }
    if (td.kind == TensorKind::Weight || l.first < 0) {
      l = Lifetime{};
      continue;
    }
    // Written by the host before node 0; read by the host after the last node.
    if (td.kind == TensorKind::Input || td.kind == TensorKind::InOut) l.first = 0;
    if (td.kind == TensorKind::Output || td.kind == TensorKind::InOut) l.last = last_node;
    int64_t rows = g.rows_of(static_cast<int>(t), d, chunk_rows);
    int64_t cols = td.cols.eval(d);
    l.bytes = static_cast<size_t>(std::max<int64_t>(rows, 0) * std::max<int64_t>(cols, 0)) *
              elem_size(td.elem, act_size);
  }
  return life;
}

std::vector<size_t> live_bytes_per_node(const std::vector<Lifetime>& life, size_t n_nodes) {
  std::vector<long long> delta(n_nodes + 1, 0);
  for (const Lifetime& l : life) {
    if (!l.planned()) continue;
    delta[l.first] += static_cast<long long>(l.bytes);
    delta[l.last + 1] -= static_cast<long long>(l.bytes);
  }
  std::vector<size_t> live(n_nodes);
  long long acc = 0;
  for (size_t i = 0; i < n_nodes; ++i) {
    acc += delta[i];
    live[i] = static_cast<size_t>(acc);
  }
  return live;
}

}  // namespace mosaic
