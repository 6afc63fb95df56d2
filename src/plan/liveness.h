#pragma once
// When each planned tensor is alive, in node indices of the execution order, and how
// many bytes it needs for concrete dims and chunk counts.
#include <cstddef>
#include <vector>

#include "graph/graph.h"

namespace mosaic {

struct Lifetime {
  int first = -1, last = -1;  // inclusive node range; first < 0: not planned (weights, unused)
  size_t bytes = 0;
  bool planned() const { return first >= 0; }
};

// `chunk_rows[r]` is region r's rows per chunk (0: one chunk); `act_size` the backend's
// activation element size.
std::vector<Lifetime> compute_lifetimes(const Graph& g, const Dims& d, const std::vector<int64_t>& chunk_rows,
                                        size_t act_size);

// Live bytes at each node (the memory timeline) from lifetimes.
std::vector<size_t> live_bytes_per_node(const std::vector<Lifetime>& life, size_t n_nodes);

}  // namespace mosaic
