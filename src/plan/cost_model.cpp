#include "plan/cost_model.h"

#include <algorithm>

namespace mosaic {

double node_flops(const Graph& g, const Node& n, const Dims& d, double rows) {
  auto cols = [&](const Operand& o) { return static_cast<double>(g.tensors[o.tensor].cols.eval(d)); };
  auto wrows = [&](const Operand& o) { return static_cast<double>(g.tensors[o.tensor].rows.eval(d)); };
  switch (n.op) {
    case Op::MatMul:
      return 2.0 * rows * cols(n.in[0]) * wrows(n.in[1]);
    case Op::Attention: {
      double kv = wrows(n.in[1]) + (n.kv_inputs() > 2 ? wrows(n.in[3]) : 0.0);
      // Block-causal over a whole sequence: a row sees the keys up to its block's end, on
      // average half of them (a cached block's few rows see them all).
      if (n.block > 0 && rows > n.block) kv = std::min(kv, kv / 2 + n.block / 2.0);
      return 4.0 * rows * kv * n.heads * n.head_dim;
    }
    case Op::MoeRoute:
      return 2.0 * rows * cols(n.in[0]) * n.moe.experts;
    case Op::MoeExperts:  // gate, up and down of each routed (row, expert) pair
      return 2.0 * rows * n.moe.top_k * 3.0 * cols(n.in[0]) * wrows(n.in[3]);
    default:
      return 0.0;
  }
}

namespace {

struct Work {
  double flops = 0, bytes = 0;
};

Work node_work(const Graph& g, const Node& n, const Dims& d, size_t act_size) {
  const double rows = static_cast<double>(g.regions[n.region].rows.eval(d));
  auto cols = [&](const Operand& o) { return static_cast<double>(g.tensors[o.tensor].cols.eval(d)); };
  auto wrows = [&](const Operand& o) { return static_cast<double>(g.tensors[o.tensor].rows.eval(d)); };
  const double flops = node_flops(g, n, d, rows);
  double bytes = 0;
  const double a = static_cast<double>(act_size);
  switch (n.op) {
    case Op::MatMul: {
      const double k = cols(n.in[0]), out = wrows(n.in[1]);
      bytes = a * (rows * k + out * k + (n.accumulate ? 2.0 : 1.0) * rows * out);
      break;
    }
    case Op::MoeExperts: {  // every expert's weights may be read
      const double d = cols(n.in[0]), f = wrows(n.in[3]);
      bytes = a * (2.0 * rows * d + 3.0 * n.moe.experts * d * f);
      break;
    }
    case Op::Attention: {
      const double kv = wrows(n.in[1]) + (n.kv_inputs() > 2 ? wrows(n.in[3]) : 0.0);
      bytes = a * (2.0 * rows * n.heads * n.head_dim + 2.0 * kv * n.kv_heads * n.head_dim);
      break;
    }
    case Op::SampleRows:
    case Op::CfgCombine:
      bytes = 4.0 * rows * cols(n.in[0]) * 2.0;
      break;
    default:  // elementwise, norms, gathers: read and write each row once
      bytes = 2.0 * a * rows * cols(n.out[0]);
      break;
  }
  return {flops, bytes};
}

}  // namespace

std::vector<double> node_costs(const Graph& g, const Dims& d, size_t act_size) {
  std::vector<double> cost(g.nodes.size(), 0.0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Work w = node_work(g, g.nodes[i], d, act_size);
    cost[i] = w.flops + kFlopsPerByte * w.bytes;
  }
  return cost;
}

double graph_flops(const Graph& g, const Dims& d) {
  double total = 0;
  for (const Node& n : g.nodes) total += node_work(g, n, d, 2).flops;
  return total;
}

}  // namespace mosaic
