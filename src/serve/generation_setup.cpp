#include "serve/generation_setup.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "decode/cached_steps.h"
#include "decode/dream_sampler.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "serve/api_error.h"

namespace mosaic::serve {

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

void refuse_unless(bool ok, const char* param, const char* sampler) {
  if (!ok) bad(param, fmt::format("'{}' is not an option of {}'s sampler", param, sampler));
}

CacheOptions cache_of(const CompletionRequest& r, const ServeDefaults& d) {
  CacheOptions c;
  c.mode = parse_cache_mode(r.cache.empty() ? d.cache : r.cache);
  validate_cache_options(c);
  return c;
}

// 0: the schedule decides; a given threshold is checked.
double threshold_of(const CompletionRequest& r) {
  if (!r.threshold) return 0.0;
  validate_threshold(*r.threshold);
  return *r.threshold;
}

std::unique_ptr<Sampler> llada_sampler(const CompletionRequest& r, int64_t gen, const ServeDefaults& d) {
  refuse_unless(r.alg.empty(), "alg", "LLaDA");
  refuse_unless(r.top_p == 1.0, "top_p", "LLaDA");
  refuse_unless(r.top_k == 0, "top_k", "LLaDA");
  GenerateOptions o;
  o.gen_length = gen;
  o.block_length = r.block_length.value_or(fitting_block_length(gen));
  o.steps = r.steps.value_or(gen);
  o.temperature = r.temperature;
  o.cfg_scale = static_cast<float>(r.cfg_scale);
  if (!r.remasking.empty()) o.remasking = parse_remasking(r.remasking);
  o.seed = r.seed;
  o.cache = cache_of(r, d);
  o.threshold = threshold_of(r);
  validate_generate_options(o);
  return std::make_unique<LladaSampler>(o);
}

std::unique_ptr<Sampler> dream_sampler(const CompletionRequest& r, int64_t gen, const ServeDefaults& d) {
  refuse_unless(r.remasking.empty(), "remasking", "Dream");
  refuse_unless(r.cfg_scale == 0.0, "cfg_scale", "Dream");
  DreamOptions o;
  o.gen_length = gen;
  o.steps = r.steps.value_or(gen);
  o.block_length = r.block_length.value_or(0);
  if (!r.alg.empty()) o.alg = parse_dream_alg(r.alg);
  o.temperature = r.temperature;
  o.top_p = r.top_p;
  o.top_k = r.top_k;
  o.seed = r.seed;
  o.cache = cache_of(r, d);
  o.threshold = threshold_of(r);
  validate_dream_options(o);
  return std::make_unique<DreamSampler>(o);
}

std::unique_ptr<Sampler> llada2_sampler(const CompletionRequest& r, int64_t gen, int64_t P, const io::ModelConfig& c,
                                        const ServeDefaults& d) {
  refuse_unless(r.alg.empty(), "alg", "LLaDA2.0");
  refuse_unless(r.remasking.empty(), "remasking", "LLaDA2.0");
  refuse_unless(r.cfg_scale == 0.0, "cfg_scale", "LLaDA2.0");
  if (!c.eos_token_id) bad("model", fmt::format("{}: LLaDA2.0's generate() needs an eos_token_id", c.source));
  Llada2Options o;
  o.gen_length = gen;
  o.block_length = r.block_length.value_or(32);
  o.steps = r.steps.value_or(o.block_length);
  o.threshold = r.threshold.value_or(0.95);
  o.temperature = r.temperature;
  o.top_k = r.top_k;
  o.top_p = r.top_p;
  o.eos_early_stop = true;  // a server returns once the answer has ended
  o.seed = r.seed;
  o.cache = cache_of(r, d).mode;
  validate_llada2_options(o);
  return std::make_unique<Llada2Sampler>(o, P, static_cast<int32_t>(*c.eos_token_id));
}

// The prompt's tokens: the chat template over the messages, the given ids, or BOS + the text.
std::vector<int32_t> encode_prompt(const Model& model, const io::Tokenizer& tok, const CompletionRequest& req) {
  const io::ModelConfig& c = model.config();
  try {
    if (req.chat) return tok.encode(model.family().chat_prompt(req.messages, true), true);
    if (req.prompt_is_tokens) {
      for (int32_t t : req.prompt_tokens)
        if (t >= c.embedding_size)
          bad("prompt", fmt::format("token id {} is past the model's {} embedding rows", t, c.embedding_size));
      return req.prompt_tokens;
    }
    std::vector<int32_t> ids;
    if (tok.bos_id) ids.push_back(*tok.bos_id);
    const std::vector<int32_t> body = tok.encode(req.prompt, true);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {  // text that is not UTF-8, a message the template refuses
    bad(req.chat ? "messages" : "prompt", e.what());
  }
}

}  // namespace

PreparedGeneration prepare_generation(const Model& model, const io::Tokenizer& tok, const CompletionRequest& req,
                                      const ServeDefaults& defaults) {
  const io::ModelConfig& c = model.config();
  PreparedGeneration g;
  g.prompt = encode_prompt(model, tok, req);
  if (g.prompt.empty()) bad(req.chat ? "messages" : "prompt", "the prompt encodes to zero tokens");
  g.max_tokens = req.max_tokens.value_or(defaults.max_tokens);
  const int64_t P = static_cast<int64_t>(g.prompt.size());
  try {
    const SamplerKind kind = model.family().default_sampler();
    if (kind == SamplerKind::Llada)
      g.sampler = llada_sampler(req, g.max_tokens, defaults);
    else if (kind == SamplerKind::Dream)
      g.sampler = dream_sampler(req, g.max_tokens, defaults);
    else
      g.sampler = llada2_sampler(req, g.max_tokens, P, c, defaults);
    g.cache = kind == SamplerKind::Llada2 ? CacheOptions{cache_of(req, defaults).mode} : cache_of(req, defaults);
    g.sequence = Sequence::start(g.prompt, g.sampler->sequence_length(P, g.max_tokens) - P,
                                 static_cast<int32_t>(c.mask_token_id), req.seed);
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    bad("", api_words(e.what()));
  }
  const int64_t total = g.sequence.length();
  const int64_t block = g.sampler->block_length();
  const int64_t prompt_masks = std::count(g.prompt.begin(), g.prompt.end(), static_cast<int32_t>(c.mask_token_id));
  g.shape = {total, std::min(block, total), std::min(total, block + prompt_masks)};
  g.guided = req.cfg_scale > 0.0;
  for (std::optional<int64_t> id : {c.eos_token_id, tok.eos_id ? std::optional<int64_t>(*tok.eos_id) : std::nullopt})
    if (id) g.end_ids.push_back(static_cast<int32_t>(*id));
  for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|endoftext|>", "<|role_end|>"})
    if (int32_t id = tok.token_id(name); id >= 0) g.end_ids.push_back(id);
  g.stop = req.stop;
  return g;
}

}  // namespace mosaic::serve
