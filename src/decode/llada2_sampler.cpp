#include "decode/llada2_sampler.h"

#include <algorithm>

#include "core/error.h"
#include "decode/schedule.h"

namespace mosaic {

void validate_llada2_options(const Llada2Options& o) {
  MOSAIC_CHECK(o.gen_length > 0, "--gen-length must be positive (got {})", o.gen_length);
  MOSAIC_CHECK(o.block_length > 0, "--block-length must be positive (got {})", o.block_length);
  MOSAIC_CHECK(o.steps > 0, "--steps must be positive (got {})", o.steps);
  MOSAIC_CHECK(o.minimal_topk > 0 && o.gen_length / o.minimal_topk >= 1,
               "--minimal-topk must be in [1, --gen-length] (got {})", o.minimal_topk);
  MOSAIC_CHECK(o.threshold >= 0.0 && o.threshold <= 1.0, "--threshold must be in [0, 1] (got {})", o.threshold);
  MOSAIC_CHECK(o.temperature >= 0.0, "--temperature must be >= 0 (got {})", o.temperature);
  MOSAIC_CHECK(o.top_k >= 0, "--top-k must be >= 0 (got {})", o.top_k);
  MOSAIC_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "--top-p must be in (0, 1] (got {})", o.top_p);
  MOSAIC_CHECK(o.cache == CacheMode::None || o.cache == CacheMode::Prefix,
               "--cache {}: LLaDA2.0 takes none or prefix (exact: its attention is block-causal)",
               cache_mode_name(o.cache));
}

Llada2Sampler::Llada2Sampler(const Llada2Options& o, int64_t prompt_length, int32_t eos_id)
    : o_(o), prompt_length_(prompt_length), first_block_(prompt_length / o.block_length), eos_(eos_id) {
  validate_llada2_options(o_);
  steps_ = std::min(o_.steps, o_.gen_length / o_.minimal_topk);
  schedule_ = transfer_schedule(o_.block_length, steps_);
}

int64_t Llada2Sampler::num_blocks() const {
  const int64_t total_blocks = (prompt_length_ + o_.gen_length + o_.block_length - 1) / o_.block_length;
  return total_blocks - first_block_;
}

void Llada2Sampler::prepare(const Sequence& s, StepRequest& r) {
  r.head_pos = s.masked_in(block_begin(s), block_end(s));
  if (r.head_pos.empty()) return;
  r.attention_block = o_.block_length;
  if (o_.cache == CacheMode::Prefix) {
    // The rows not cached yet, up to the block's end, against the cached ones.
    r.cache = {CacheOptions{CacheMode::Prefix}, CacheStep::Cached, block_begin(s), block_end(s), cached_,
               block_end(s)};
  } else {
    // The official loop runs the window x[:, :block_end]: later blocks are never seen.
    window_.assign(s.tokens.begin(), s.tokens.begin() + block_end(s));
    r.tokens = &window_;
  }
  r.sample = SampleParams{};
  r.sample.rule = TokenRule::Llada2;
  r.sample.temperature = o_.temperature;
  r.sample.top_k = o_.top_k;
  r.sample.top_p = o_.top_p;
  r.sample.seed = s.seed;
  r.sample.step = static_cast<uint64_t>(forwards_);
}

int64_t Llada2Sampler::commit(Sequence& s, const StepRequest& r, const StepOutputs& out) {
  if (r.head_pos.empty()) return 0;
  ++forwards_;
  // The rows before the block are final once run with their final tokens: cached from now on.
  if (o_.cache == CacheMode::Prefix) cached_ = std::max(cached_, block_begin(s));
  // Confidences above the threshold, compared in float32 as the official code compares the
  // float32 confidences with the Python float.
  const float threshold = static_cast<float>(o_.threshold);
  const int64_t n = static_cast<int64_t>(r.head_pos.size());
  std::vector<int64_t> chosen;
  for (int64_t i = 0; i < n; ++i)
    if (out.conf[i] > threshold) chosen.push_back(i);
  const int64_t k = schedule_[s.step];
  if (static_cast<int64_t>(chosen.size()) < k) {
    chosen.clear();  // the scheduled number by confidence (out.order: ties to the lower position)
    for (int64_t i = 0; i < std::min(k, n); ++i) chosen.push_back(out.order[i]);
  }
  bool eos = false;
  for (int64_t i : chosen) {
    s.tokens[r.head_pos[i]] = out.token[i];
    eos |= out.token[i] == eos_;
  }
  if (o_.eos_early_stop && eos) {
    // Stop when the first eos of the window (from position 0) has no mask after the prompt before it.
    const auto end = s.tokens.begin() + block_end(s);
    const auto first = std::find(s.tokens.begin(), end, eos_);
    if (first != end && std::find(s.tokens.begin() + std::min(prompt_length_, first - s.tokens.begin()), first,
                                  s.mask_id) == first)
      s.finished = true;
  }
  // A finished block that holds an eos after the prompt ends the generation (with or without
  // eos_early_stop).
  if (block_done(s) && std::find(s.tokens.begin() + prompt_length_, s.tokens.begin() + block_end(s), eos_) !=
                           s.tokens.begin() + block_end(s))
    s.finished = true;
  return static_cast<int64_t>(chosen.size());
}

bool Llada2Sampler::block_done(const Sequence& s) const {
  return s.step + 1 >= steps_ || s.masked_in(block_begin(s), block_end(s)).empty();
}

std::vector<int32_t> llada2_answer(const std::vector<int32_t>& tokens, int64_t prompt_length, int64_t gen_length,
                                   int32_t eos_id) {
  const auto begin = tokens.begin() + prompt_length;
  const auto end = begin + std::min<int64_t>(gen_length, static_cast<int64_t>(tokens.size()) - prompt_length);
  const auto eos = std::find(begin, end, eos_id);
  return std::vector<int32_t>(begin, eos == end ? end : eos + 1);
}

GenerateResult llada2_generate(Model& model, const std::vector<int32_t>& prompt, const Llada2Options& o,
                               const StepCallback& on_step) {
  const io::ModelConfig& c = model.config();
  MOSAIC_CHECK(c.eos_token_id.has_value(), "{}: LLaDA2.0's generate() needs an eos_token_id", c.source);
  Llada2Sampler sampler(o, static_cast<int64_t>(prompt.size()), static_cast<int32_t>(*c.eos_token_id));
  const int64_t P = static_cast<int64_t>(prompt.size());
  Sequence seq = Sequence::start(prompt, sampler.sequence_length(P, o.gen_length) - P,
                                 static_cast<int32_t>(c.mask_token_id), o.seed);
  return run_generation(model, sampler, seq, on_step);
}

}  // namespace mosaic
