#pragma once
// How long each node runs, roughly: FLOPs plus bytes moved at a fixed exchange rate. Only
// ratios matter. It weights the memory timeline by time (a 30 s attention and a 1 us add
// are not equal moments of a step) and lets reports say where the step spends itself.
#include <vector>

#include "graph/graph.h"

namespace mosaic {

// A Hopper-class GPU does ~230 bf16 FLOPs in the time it moves one byte (~700 TFLOP/s over
// ~3 TB/s); the CPU's ratio is similar enough for weighting.
constexpr double kFlopsPerByte = 230.0;

// Modeled cost of each node over the whole step (all its chunks), in FLOP-equivalents.
std::vector<double> node_costs(const Graph& g, const Dims& d, size_t act_size);

// Multiply-adds x2 of one node run on `rows` rows (a chunk, or its region's rows): products
// and attention; 0 for the rest.
double node_flops(const Graph& g, const Node& n, const Dims& d, double rows);

// Multiply-adds x2 the step's products and attention run (what TFLOP/s figures count):
// exactly the graph's work, so the masked last layer and the M-row head count as run.
double graph_flops(const Graph& g, const Dims& d);

}  // namespace mosaic
