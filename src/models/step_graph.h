#pragma once
// config -> the graph of one denoising step (the "graph registrar"): embedding, the
// transformer trunk, and the mask-only head that projects and samples only the rows the
// sampler can commit. Shapes are symbolic in L (tokens) and M (head rows).
#include "backend/backend.h"
#include "graph/graph.h"
#include "io/model_config.h"

namespace mosaic {

struct GraphOptions {
  bool cfg = false;          // two trunks (prompt kept / prompt masked) and a guided head
  bool emit_logits = false;  // head writes logits [M, V] instead of sampling (tests, eval)
  bool fused_qkv = false;    // q/k/v are row slices of one att_proj tensor
  // The last layer's queries, attention output and FFN run on the head's M rows only (its
  // keys and values still see all L). Off: every layer runs all L rows (for comparisons, and
  // for runs of the first layers only, which stand in for middle layers).
  bool masked_last_layer = true;
  // A segment of the layers, [first_layer, end_layer) (-1: to the last). A segment that does
  // not start at layer 0 reads the hidden state "hidden" [L, d] from the host instead of
  // embedding tokens; one that stops early hands "hidden" back instead of running the head.
  // Lets a step too long for one sitting run in pieces (bench --segment).
  int first_layer = 0, end_layer = -1;
  BackendTraits traits = cpu_traits();
};

Graph build_step_graph(const io::ModelConfig& c, const GraphOptions& o);

}  // namespace mosaic
