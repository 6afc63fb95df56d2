// mosaic bench: one length's measurement. Builds the request of the first denoising step
// at length L and times --warmup + --iters steps of it (plus one for --op-times).
#include <algorithm>
#include <random>

#include "cli/bench_internal.h"
#include "core/error.h"
#include "parallel/sequence_shards.h"
#include "plan/cost_model.h"

namespace mosaic::cli {

namespace {

// A prompt of random ordinary tokens followed by gen_length masks, as the first step of
// generate() sees it.
std::vector<int32_t> bench_sequence(const io::ModelConfig& c, int64_t L, int64_t gen) {
  std::mt19937 rng(1234);
  std::vector<int32_t> x(static_cast<size_t>(L), static_cast<int32_t>(c.mask_token_id));
  const int64_t vocab = std::min(c.vocab_size, c.mask_token_id > 0 ? c.mask_token_id : c.vocab_size);
  for (int64_t i = 0; i < L - gen; ++i) x[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return x;
}

// The step's floating-point work: its graph's, or with --gpus every rank's shard's summed.
double step_flops(Model& m, const StepRequest& req) {
  const Graph& g = m.graph(req);
  const int64_t L = static_cast<int64_t>(req.tokens->size()), M = static_cast<int64_t>(req.head_pos.size());
  if (m.ranks() == 0) return graph_flops(g, Dims{L, M});
  const std::vector<parallel::Shard> shards = parallel::shard_rows(L, m.ranks());
  std::vector<int64_t> heads(shards.size(), 0);
  for (int32_t p : req.head_pos) ++heads[parallel::shard_of(shards, std::max<int64_t>(m.family().head_row(p), 0))];
  double flops = 0;
  for (size_t r = 0; r < shards.size(); ++r) flops += graph_flops(g, Dims{shards[r].count, heads[r], L, 0});
  return flops;
}

}  // namespace

Measured measure(Model& m, int64_t L, const BenchFlags& f, const std::vector<std::byte>* hidden_in) {
  Measured r;
  r.L = L;
  const int64_t gen = std::min(f.gen_length, L - 1);
  // Block diffusion (LLaDA2.0): the step that denoises the block ending at L, as the official
  // generate() runs it: block-causal attention over [0, L), the last block's rows to the head.
  const bool block_diffusion = m.family().default_sampler() == SamplerKind::Llada2;
  const int64_t masked = block_diffusion ? std::min(f.block_length, L - 1) : gen;
  auto x = bench_sequence(m.config(), L, masked);
  std::vector<int32_t> pos;
  for (int64_t i = L - masked; i < std::min(L, L - masked + f.block_length); ++i) pos.push_back(static_cast<int32_t>(i));
  r.M = static_cast<int64_t>(pos.size());
  r.pos0 = L - masked;
  StepRequest req;
  if (block_diffusion) req.attention_block = f.block_length;
  req.tokens = &x;
  req.head_pos = pos;
  req.hidden_in = hidden_in;
  r.dims = m.dims(req);
  try {
    for (int i = 0; i < f.warmup + f.iters; ++i) {
      StepStats st;
      r.last = m.step(req, &st);
      if (i >= f.warmup) r.ms.push_back(st.ms);
      r.arena = st.arena_bytes;
      r.peak_live = st.peak_live;
      r.avg_live = st.avg_live;
      r.mapped = st.mapped_bytes;
      r.chunks = st.chunks;
    }
  } catch (const Error& e) {
    r.error = e.what();
    return r;
  }
  if (f.op_times) {
    m.set_op_times(&r.op_times);
    m.step(req);
    m.set_op_times(nullptr);
  }
  std::vector<double> s = r.ms;
  std::sort(s.begin(), s.end());
  r.median_ms = s[s.size() / 2];
  r.tflops = step_flops(m, req) / (r.median_ms * 1e-3) / 1e12;
  r.device_peak = m.backend().peak_device_bytes();
  return r;
}

}  // namespace mosaic::cli
