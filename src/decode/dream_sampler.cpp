#include "decode/dream_sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "decode/cached_steps.h"
#include "decode/schedule.h"
#include "sampling/counter_noise.h"

namespace mosaic {

DreamAlg parse_dream_alg(const std::string& s) {
  if (s == "origin") return DreamAlg::Origin;
  if (s == "maskgit_plus") return DreamAlg::MaskgitPlus;
  if (s == "topk_margin") return DreamAlg::TopkMargin;
  if (s == "entropy") return DreamAlg::Entropy;
  MOSAIC_FAIL("--alg '{}' is not known: use origin, maskgit_plus, topk_margin or entropy", s);
}

std::string dream_alg_name(DreamAlg a) {
  switch (a) {
    case DreamAlg::Origin: return "origin";
    case DreamAlg::MaskgitPlus: return "maskgit_plus";
    case DreamAlg::TopkMargin: return "topk_margin";
    case DreamAlg::Entropy: return "entropy";
  }
  return "?";
}

void validate_dream_options(const DreamOptions& o) {
  MOSAIC_CHECK(o.block_length >= 0, "--block-length must be positive (got {})", o.block_length);
  check_block_schedule(o.gen_length, o.block_length > 0 ? o.block_length : o.gen_length, o.steps);
  MOSAIC_CHECK(o.temperature >= 0.0, "--temperature must be >= 0 (got {})", o.temperature);
  MOSAIC_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "--top-p must be in (0, 1] (got {}; 1 = off)", o.top_p);
  MOSAIC_CHECK(o.top_k >= 0, "--top-k must be >= 0 (got {}; 0 = off)", o.top_k);
  MOSAIC_CHECK(o.alg_temp >= 0.0, "--alg-temp must be >= 0 (got {})", o.alg_temp);
  MOSAIC_CHECK(o.eps > 0.0 && o.eps < 1.0, "--eps must be in (0, 1) (got {})", o.eps);
  MOSAIC_CHECK(o.alg_temp == 0.0 || o.alg != DreamAlg::Origin,
               "--alg-temp applies to the confidence algorithms, not to --alg origin");
  validate_cache_options(o.cache);
  if (o.threshold != 0.0) {
    validate_threshold(o.threshold);
    MOSAIC_CHECK(o.alg_temp == 0.0, "--alg-temp does not apply with --threshold (threshold decoding commits every "
                 "token whose probability reaches it)");
  }
  if (o.cache.mode != CacheMode::None) {
    MOSAIC_CHECK(o.alg != DreamAlg::Origin || o.threshold > 0.0,
                 "--cache {} with Dream needs a confidence --alg (maskgit_plus, topk_margin, entropy), not origin",
                 cache_mode_name(o.cache.mode));
    const int64_t blocks = o.gen_length / (o.block_length > 0 ? o.block_length : o.gen_length);
    MOSAIC_CHECK(o.threshold > 0.0 || o.steps / blocks >= 2,
                 "--cache {} with Dream needs at least 2 steps per block (--steps {} over {} blocks): a block's first "
                 "step commits only its first token", cache_mode_name(o.cache.mode), o.steps, blocks);
  }
}

std::vector<float> linspace_f32(float start, float end, int64_t n) {
  std::vector<float> v(static_cast<size_t>(std::max<int64_t>(n, 0)));
  if (n == 1) v[0] = start;
  if (n <= 1) return v;
  const float step = (end - start) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  // One rounding per value (a fused multiply-add), as torch's CUDA kernel and its current CPU
  // kernel compute it; tools/reference/dream_generate.py --check-linspace pins this.
  for (int64_t i = 0; i < n; ++i)
    v[i] = i < halfway ? std::fma(step, static_cast<float>(i), start)
                       : std::fma(-step, static_cast<float>(n - 1 - i), end);
  return v;
}

int64_t dream_transfer_count(int64_t masked, float t, float s) {
  const float keep = s / t;                       // float32, as the 0-dim tensors divide
  const float frac = 1.0f - keep;                 // float32
  const float n = static_cast<float>(masked) * frac;  // mask_index.sum() / batch is float32
  return static_cast<int64_t>(n);                 // int() truncates
}

DreamSampler::DreamSampler(const DreamOptions& o) : o_(o) {
  validate_dream_options(o_);
  timesteps_ = linspace_f32(1.0f, static_cast<float>(o_.eps), steps_per_block() + 1);
}

void DreamSampler::prepare(const Sequence& s, StepRequest& r) {
  // Candidates: the masked positions of the current block (the prompt is never re-masked).
  const int64_t begin = block_begin(s);
  std::vector<int32_t> masked = s.masked_in(begin, begin + block_length());
  r.cache = cache_step(o_.cache, s.step, begin, begin + block_length(), s.length());
  r.sample = SampleParams{};
  r.sample.rule = TokenRule::Dream;
  r.sample.temperature = o_.temperature;
  r.sample.top_p = o_.top_p;
  r.sample.top_k = o_.top_k;
  r.sample.seed = s.seed;
  r.sample.step = static_cast<uint64_t>(s.global_step);
  k_ = 0;
  threshold_step_ = false;
  if (first_token_step(s)) {
    if (!masked.empty() && masked[0] == begin) r.head_pos = {masked[0]}, k_ = 1;
    return;
  }
  if (o_.threshold > 0.0) {
    threshold_step_ = true;
    r.head_pos = std::move(masked);
    return;
  }
  const bool last = s.step == steps_per_block() - 1;
  const float t = timesteps_[s.step], sv = timesteps_[s.step + 1];
  if (o_.alg == DreamAlg::Origin) {
    // Each masked position is committed with probability 1 - s/t (all at the last step);
    // only those need logits.
    const float p_transfer = last ? 1.0f : 1.0f - sv / t;
    for (int32_t pos : masked)
      if (counter_uniform(s.seed, kOriginStream, r.sample.step, static_cast<uint64_t>(pos), 0) <
          static_cast<double>(p_transfer))
        r.head_pos.push_back(pos);
    return;
  }
  const int64_t n = static_cast<int64_t>(masked.size());
  k_ = last ? n : dream_transfer_count(n, t, sv);
  // Nothing to commit: no model step, unless it is the one that stores the cache.
  if (k_ <= 0 && r.cache.step != CacheStep::Store) return;
  r.head_pos = std::move(masked);
  r.sample.confidence = o_.alg == DreamAlg::TopkMargin ? Confidence::Margin
                        : o_.alg == DreamAlg::Entropy  ? Confidence::NegEntropy
                                                       : Confidence::Probability;
}

int64_t DreamSampler::commit(Sequence& s, const StepRequest& r, const StepOutputs& out) {
  const int64_t rows = static_cast<int64_t>(r.head_pos.size());
  if (rows == 0) return 0;
  if (threshold_step_) {
    const int64_t k = threshold_count(out.order, out.conf, o_.threshold);
    for (int64_t i = 0; i < k; ++i) s.tokens[r.head_pos[out.order[i]]] = out.token[out.order[i]];
    return k;
  }
  if (o_.alg == DreamAlg::Origin && !first_token_step(s)) {
    for (int64_t i = 0; i < rows; ++i) s.tokens[r.head_pos[i]] = out.token[i];
    return rows;
  }
  const int64_t k = std::min(k_, rows);
  if (o_.alg_temp == 0.0) {
    // out.order ranks rows by confidence, ties to the lower position (torch.topk leaves them open).
    for (int64_t i = 0; i < k; ++i) s.tokens[r.head_pos[out.order[i]]] = out.token[out.order[i]];
    return k;
  }
  // torch.multinomial(softmax(conf / alg_temp), k) without replacement is the top k of w / E,
  // E ~ Exp(1): here E = -log u from the counter noise.
  double mx = -INFINITY;
  for (float c : out.conf) mx = std::max(mx, c / o_.alg_temp);
  std::vector<double> key(static_cast<size_t>(rows));
  double sum = 0;
  for (int64_t i = 0; i < rows; ++i) sum += (key[i] = std::exp(out.conf[i] / o_.alg_temp - mx));
  for (int64_t i = 0; i < rows; ++i) {
    const double u = counter_uniform(s.seed, kAlgStream, r.sample.step, static_cast<uint64_t>(r.head_pos[i]), 0);
    key[i] = key[i] / sum / -std::log(u);
  }
  std::vector<int64_t> idx(static_cast<size_t>(rows));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return key[a] > key[b]; });
  for (int64_t i = 0; i < k; ++i) s.tokens[r.head_pos[idx[i]]] = out.token[idx[i]];
  return k;
}

bool DreamSampler::block_done(const Sequence& s) const {
  if (o_.threshold > 0.0) {
    const int64_t begin = block_begin(s);
    return s.masked_in(begin, begin + block_length()).empty();
  }
  return Sampler::block_done(s);
}

GenerateResult dream_generate(Model& model, const std::vector<int32_t>& prompt, const DreamOptions& o,
                              const StepCallback& on_step) {
  validate_dream_options(o);
  Sequence seq = Sequence::start(prompt, o.gen_length, static_cast<int32_t>(model.config().mask_token_id), o.seed);
  DreamSampler sampler(o);
  return run_generation(model, sampler, seq, on_step);
}

}  // namespace mosaic
