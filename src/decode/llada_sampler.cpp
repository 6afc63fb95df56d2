#include "decode/llada_sampler.h"

#include "core/error.h"
#include "decode/cached_steps.h"
#include "decode/schedule.h"

namespace mosaic {

int64_t fitting_block_length(int64_t gen_length) {
  for (int64_t b = std::min<int64_t>(32, gen_length); b > 1; --b)
    if (gen_length % b == 0) return b;
  return std::max<int64_t>(gen_length, 1);
}

Confidence parse_remasking(const std::string& s) {
  if (s == "low_confidence") return Confidence::Probability;
  if (s == "random") return Confidence::Random;
  MOSAIC_FAIL("--remasking '{}' is not known: use low_confidence or random", s);
}

void validate_generate_options(const GenerateOptions& o) {
  check_block_schedule(o.gen_length, o.block_length, o.steps);
  MOSAIC_CHECK(o.temperature >= 0.0, "--temperature must be >= 0 (got {})", o.temperature);
  MOSAIC_CHECK(o.cfg_scale >= 0.0f, "--cfg-scale must be >= 0 (got {})", o.cfg_scale);
  validate_cache_options(o.cache);
  if (o.threshold != 0.0) validate_threshold(o.threshold);
}

LladaSampler::LladaSampler(const GenerateOptions& o) : o_(o) { validate_generate_options(o_); }

void LladaSampler::prepare(const Sequence& s, StepRequest& r) {
  const bool threshold = o_.threshold > 0.0;
  if (s.step == 0 && !threshold)
    schedule_ = transfer_schedule(static_cast<int64_t>(s.masked_in(block_begin(s), block_end(s)).size()),
                                  steps_per_block());
  if (!threshold && schedule_[s.step] == 0) return;  // nothing to commit: no model step
  r.cache = cache_step(o_.cache, s.step, block_begin(s), block_end(s), s.length());
  // Mask-only: only masked positions before the block's end can be committed, so only
  // those rows reach the LM head; a cached step sees only the block's.
  r.head_pos = s.masked_in(r.cache.step == CacheStep::Cached ? block_begin(s) : 0, block_end(s));
  if (r.head_pos.empty()) return;
  r.sample = SampleParams{};
  r.sample.temperature = o_.temperature;
  r.sample.confidence = o_.remasking;
  r.sample.seed = s.seed;
  r.sample.step = static_cast<uint64_t>(s.global_step);
  r.sample.cfg_scale = o_.cfg_scale;
  if (o_.cfg_scale > 0.0f) {
    // The official un_x: the positions that held prompt tokens at the start (prompt_index =
    // x != mask before the first step) masked, the rest as the sequence now. A mask inside
    // the prompt is a candidate like any other; once filled it stays in un_x.
    if (s.global_step == 0) {
      prompt_index_.assign(static_cast<size_t>(s.prompt_length), false);
      for (int64_t i = 0; i < s.prompt_length; ++i) prompt_index_[i] = s.tokens[i] != s.mask_id;
    }
    uncond_ = s.tokens;
    for (int64_t i = 0; i < s.prompt_length; ++i)
      if (prompt_index_[i]) uncond_[i] = s.mask_id;
    r.tokens_uncond = &uncond_;
  }
}

int64_t LladaSampler::commit(Sequence& s, const StepRequest& r, const StepOutputs& out) {
  if (r.head_pos.empty()) return 0;
  // out.order ranks the rows by confidence (ties: lower position), as top_k_indices would.
  const int64_t k = o_.threshold > 0.0 ? threshold_count(out.order, out.conf, o_.threshold)
                                       : std::min<int64_t>(schedule_[s.step], static_cast<int64_t>(out.order.size()));
  for (int64_t i = 0; i < k; ++i) s.tokens[r.head_pos[out.order[i]]] = out.token[out.order[i]];
  return k;
}

bool LladaSampler::block_done(const Sequence& s) const {
  if (o_.threshold > 0.0) return s.masked_in(block_begin(s), block_end(s)).empty();
  return Sampler::block_done(s);
}

GenerateResult llada_generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const StepCallback& on_step) {
  validate_generate_options(o);
  Sequence seq = Sequence::start(prompt, o.gen_length, static_cast<int32_t>(model.config().mask_token_id), o.seed);
  LladaSampler sampler(o);
  return run_generation(model, sampler, seq, on_step);
}

}  // namespace mosaic
