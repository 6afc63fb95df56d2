// mosaic generate: prompt -> tokens -> the family's sampler -> text (or JSON).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "cli/commands.h"
#include "cli/offload_flags.h"
#include "cli/session.h"
#include "core/error.h"
#include "decode/cached_steps.h"
#include "decode/dream_sampler.h"
#include "decode/engine.h"
#include "decode/llada2_sampler.h"
#include "decode/llada_sampler.h"
#include "models/family.h"
#include "models/generation_plan.h"
#include "io/token_list.h"
#include "io/tokenizer.h"

namespace mosaic::cli {

namespace {

struct GenerateFlags {
  SessionFlags session;
  OffloadFlags offload;
  std::string prompt, prompt_tokens, format = "text", remasking = "low_confidence", alg = "entropy";
  bool chat = false, quiet = false, stream = false;
  CLI::Option* prompt_tokens_flag = nullptr;
  int64_t gen_length = 128, steps = 128, block_length = 0;
  double temperature = 0.0, top_p = 1.0, alg_temp = 0.0, eps = 1e-3;
  int64_t top_k = 0;
  float cfg_scale = 0.0f;
  uint64_t seed = 0;
  std::string cache = "none";
  double threshold = 0.0, sparse_keep = 0.5;
  int sparse_kernel = 3;
  int64_t minimal_topk = 1;
  bool eos_early_stop = false;
  CLI::Option* threshold_flag = nullptr;
  std::vector<CLI::Option*> sparse_flags;
  // Flags that belong to some samplers: given on a model of another family, they are an error.
  std::vector<CLI::Option*> llada_only, dream_only, filters, llada2_only;
  CLI::Option* block_length_flag = nullptr;  // not given: each sampler's default
  CLI::Option* steps_flag = nullptr;
};

// The names of the given options among `opts`, comma-separated ("" when none was given).
std::string given(const std::vector<CLI::Option*>& opts) {
  std::string names;
  for (const CLI::Option* o : opts)
    if (o->count() > 0) names += (names.empty() ? "" : ", ") + o->get_name();
  return names;
}

// Refuses the given options among `lists`: they belong to other families' samplers.
void refuse(std::initializer_list<std::vector<CLI::Option*>> lists, const char* family, const char* takes) {
  std::vector<CLI::Option*> all;
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  const std::string wrong = given(all);
  MOSAIC_CHECK(wrong.empty(), "{} {} not for {}-family models (their sampler takes {})", wrong,
               wrong.find(',') == std::string::npos ? "is" : "are", family, takes);
}

CacheOptions cache_options(const GenerateFlags& f) {
  CacheOptions c{parse_cache_mode(f.cache), f.sparse_keep, f.sparse_kernel};
  validate_cache_options(c);
  check_sparse_flags(f.sparse_flags, c.mode == CacheMode::Sparse);
  return c;
}

// 0: no threshold decoding; a given --threshold must be in (0, 1].
double threshold(const GenerateFlags& f) {
  if (f.threshold_flag->count() == 0) return 0.0;
  validate_threshold(f.threshold);
  return f.threshold;
}

void add_cache_settings(const CacheOptions& c, double threshold, nlohmann::json& settings) {
  settings["cache"] = cache_mode_name(c.mode);
  settings["threshold"] = threshold > 0 ? nlohmann::json(threshold) : nlohmann::json(nullptr);
  if (c.mode == CacheMode::Sparse) {
    settings["sparse_keep"] = c.sparse_keep;
    settings["sparse_kernel"] = c.sparse_kernel;
  }
}

// LLaDA2.0's sampler needs the prompt's length: its options now (checked before the weights
// load), the sampler once the prompt is known.
Llada2Options llada2_options(const GenerateFlags& f, nlohmann::json& settings) {
  refuse({f.llada_only, f.dream_only}, "LLaDA2.0", "--threshold, --top-k, --top-p, --minimal-topk, --eos-early-stop");
  Llada2Options o;
  o.gen_length = f.gen_length;
  o.block_length = f.block_length_flag->count() ? f.block_length : 32;
  o.steps = f.steps_flag->count() ? f.steps : o.block_length;
  o.threshold = f.threshold_flag->count() ? f.threshold : 0.95;
  o.temperature = f.temperature;
  o.top_k = f.top_k;
  o.top_p = f.top_p;
  o.minimal_topk = f.minimal_topk;
  o.eos_early_stop = f.eos_early_stop;
  o.seed = f.seed;
  o.cache = parse_cache_mode(f.cache);
  check_sparse_flags(f.sparse_flags, false);
  validate_llada2_options(o);
  settings = {{"sampler", "llada2"}, {"gen_length", o.gen_length}, {"steps", o.steps},
              {"block_length", o.block_length}, {"threshold", o.threshold}, {"temperature", o.temperature},
              {"top_k", o.top_k}, {"top_p", o.top_p}, {"minimal_topk", o.minimal_topk},
              {"eos_early_stop", o.eos_early_stop}, {"seed", o.seed}, {"cache", cache_mode_name(o.cache)}};
  return o;
}

std::unique_ptr<Sampler> make_sampler(SamplerKind kind, const GenerateFlags& f, nlohmann::json& settings) {
  if (kind == SamplerKind::Llada) {
    refuse({f.dream_only, f.filters, f.llada2_only}, "LLaDA", "--remasking, --cfg-scale");
    const bool block_given = f.block_length_flag->count() > 0, steps_given = f.steps_flag->count() > 0;
    const int64_t block = block_given ? f.block_length : fitting_block_length(f.gen_length);
    const int64_t steps = steps_given ? f.steps : f.gen_length;
    if (!f.quiet && ((!block_given && block != 32) || (!steps_given && steps != 128)))
      fmt::print(stderr, "mosaic: --gen-length {}: {}{}{}\n", f.gen_length,
                 block_given ? "" : fmt::format("--block-length {} (the largest divisor up to 32)", block),
                 !block_given && !steps_given ? ", " : "",
                 steps_given ? "" : fmt::format("--steps {} (one token per step)", steps));
    GenerateOptions o{f.gen_length, steps, block, f.temperature,
                      f.cfg_scale, parse_remasking(f.remasking), f.seed, cache_options(f), threshold(f)};
    settings = {{"sampler", "llada"}, {"gen_length", o.gen_length}, {"steps", o.steps},
                {"block_length", o.block_length}, {"temperature", o.temperature}, {"cfg_scale", o.cfg_scale},
                {"remasking", f.remasking}, {"seed", o.seed}};
    add_cache_settings(o.cache, o.threshold, settings);
    return std::make_unique<LladaSampler>(o);
  }
  refuse({f.llada_only, f.llada2_only}, "Dream", "--alg, --alg-temp, --top-p, --top-k, --eps");
  DreamOptions o;
  o.gen_length = f.gen_length;
  o.steps = f.steps;
  o.block_length = f.block_length;
  MOSAIC_CHECK(f.block_length_flag->count() == 0 || f.block_length > 0, "--block-length must be positive (got {})",
               f.block_length);
  o.alg = parse_dream_alg(f.alg);
  o.temperature = f.temperature;
  o.top_p = f.top_p;
  o.top_k = f.top_k;
  o.alg_temp = f.alg_temp;
  o.eps = f.eps;
  o.seed = f.seed;
  o.cache = cache_options(f);
  o.threshold = threshold(f);
  settings = {{"sampler", "dream"}, {"gen_length", o.gen_length}, {"steps", o.steps},
              {"block_length", o.block_length > 0 ? o.block_length : o.gen_length}, {"alg", f.alg},
              {"temperature", o.temperature}, {"top_p", o.top_p}, {"top_k", o.top_k}, {"alg_temp", o.alg_temp},
              {"eps", o.eps}, {"seed", o.seed}};
  add_cache_settings(o.cache, o.threshold, settings);
  return std::make_unique<DreamSampler>(o);
}

void run_generate(const GenerateFlags& f) {
  MOSAIC_CHECK(f.prompt.empty() || f.prompt_tokens.empty(), "give either --prompt or --prompt-tokens, not both");
  MOSAIC_CHECK(f.prompt_tokens_flag->count() == 0 || !f.prompt_tokens.empty(),
               "--prompt-tokens is empty: give token ids such as 1,2,3 (or leave the flag out for the default prompt)");
  MOSAIC_CHECK(f.format == "text" || f.format == "json", "--format '{}': use text or json", f.format);
  // The sampler and its options are checked from config.json, before gigabytes of weights load.
  const std::string dir = resolve_model_dir(f.session.model);
  const io::ModelConfig peek = load_model_config((std::filesystem::path(dir) / "config.json").string());
  nlohmann::json settings;
  const SamplerKind kind = family_of(peek).default_sampler();
  std::unique_ptr<Sampler> sampler;
  Llada2Options llada2;
  if (kind == SamplerKind::Llada2)
    llada2 = llada2_options(f, settings);
  else
    sampler = make_sampler(kind, f, settings);

  const int ranks = static_cast<int>(rank_devices(f.session).size());
  MOSAIC_CHECK(ranks == 1 || parse_cache_mode(f.cache) == CacheMode::None,
               "--gpus {} shards whole steps and runs without a cache: drop --cache {} (or --gpus)", ranks, f.cache);
  const bool offloads =  // flag errors first
      offload_slots(f.offload, peek, traits_of(resolve_backend(f.session.backend)).act_size).has_value();
  MOSAIC_CHECK(ranks == 1 || (!offloads && !f.offload.moe_stats),
               "--gpus {}: an expert offload runs on one GPU; drop --gpus or the offload flags", ranks);
  Session s(f.session, !f.quiet, -1, &f.offload);
  const io::ModelConfig& config = s.model().config();
  offload::ExpertOffload* const offload = s.offload();
  std::vector<int32_t> prompt;
  if (!f.prompt_tokens.empty()) {
    prompt = io::parse_token_list(f.prompt_tokens, config.embedding_size);
  } else {
    const io::Tokenizer& tok = s.tokenizer();
    std::string text = f.prompt.empty() ? std::string("Once upon a time") : f.prompt;
    if (f.chat)
      prompt = tok.encode(s.model().family().chat_prompt({{"user", text}}, true), true);
    else
      prompt = s.encode_plain(text);
  }
  MOSAIC_CHECK(!prompt.empty(), "the prompt encodes to zero tokens; give a non-empty --prompt");
  const int64_t P = static_cast<int64_t>(prompt.size());
  int64_t total = P + f.gen_length;
  if (kind == SamplerKind::Llada2) {  // the generation padded to whole blocks from position 0
    MOSAIC_CHECK(config.eos_token_id.has_value(), "{}: LLaDA2.0's generate() needs an eos_token_id", config.source);
    auto s2 = std::make_unique<Llada2Sampler>(llada2, P, static_cast<int32_t>(*config.eos_token_id));
    total = s2->sequence_length(P, f.gen_length);
    sampler = std::move(s2);
  }
  if (config.max_seq_len > 0 && total > config.max_seq_len && !f.quiet)
    fmt::print(stderr, "mosaic: note: {} tokens is past the {} the model was trained for (config.json "
               "max sequence length); quality may drop\n", total, config.max_seq_len);

  // Every kind of step the generation takes is planned now: a cache that does not fit is
  // refused before the first step, with the longest sequence that would fit.
  const int64_t block = settings["block_length"].get<int64_t>();
  // A whole-sequence step's head rows: the block's masks and any the prompt holds.
  const int64_t prompt_masks = std::count(prompt.begin(), prompt.end(), static_cast<int32_t>(config.mask_token_id));
  const CacheOptions cache = kind == SamplerKind::Llada2 ? CacheOptions{llada2.cache} : cache_options(f);
  const GenerationPlan gen_plan = s.model().check_generation(
      cache, {total, block, std::min(total, block + prompt_masks)}, settings.value("cfg_scale", 0.0) > 0.0);
  if (gen_plan.cache_bytes > 0 && !f.quiet)
    fmt::print(stderr, "mosaic: {} cache: {} (all layers), arena up to {}\n", f.cache,
               human_bytes(static_cast<double>(gen_plan.cache_bytes)),
               human_bytes(static_cast<double>(gen_plan.arena_bytes)));

  const bool progress = !f.quiet;
  // --stream: on a terminal the text is redrawn in place (cursor saved before the first draw,
  // restored and the screen below cleared at every step); elsewhere one line per step, its
  // newlines written as \n, no escape codes.
  const bool redraw = isatty(STDERR_FILENO) != 0;
  bool drawn = false;
  StepStats last_run;  // steps that commit nothing are skipped: report the last that ran
  auto on_step = [&](const StepEvent& ev, const std::vector<int32_t>& x) {
    if (ev.ran_model) last_run = ev.stats;
    if (f.stream && s.has_tokenizer() && f.format == "text") {
      std::vector<int32_t> gen(x.begin() + static_cast<int64_t>(prompt.size()), x.end());
      std::string text = s.tokenizer().decode(gen, true);
      if (redraw) {
        fmt::print(stderr, "{}[step {}] {}", drawn ? "\x1b" "8\x1b[J" : "\x1b" "7", ev.global_step + 1, text);
        drawn = true;
      } else {
        std::string line;
        for (char c : text) line += c == '\n' ? std::string("\\n") : std::string(1, c);
        fmt::print(stderr, "[step {}] {}\n", ev.global_step + 1, line);
      }
    }
    if (progress && ev.block_done)
      fmt::print(stderr, "mosaic: block {}/{} done ({} steps, last model step {:.1f} ms, arena {})\n", ev.block + 1,
                 ev.num_blocks, ev.step + 1, last_run.ms, human_bytes(static_cast<double>(last_run.arena_bytes)));
  };
  Sequence seq = Sequence::start(prompt, total - P, static_cast<int32_t>(config.mask_token_id), f.seed);
  GenerateResult r = run_generation(s.model(), *sampler, seq, on_step);
  if (f.stream && redraw) fmt::print(stderr, "\n");
  if (offload && offload->tau_choice() && progress) fmt::print(stderr, "mosaic: {}", offload->tau_choice()->explain(offload->costs()));
  if (offload && f.offload.moe_stats) fmt::print(stderr, "{}", offload->report());

  // LLaDA2.0 returns --gen-length tokens cut after the first eos; the others the whole region.
  std::vector<int32_t> gen =
      kind == SamplerKind::Llada2
          ? llada2_answer(r.tokens, r.prompt_length, f.gen_length, static_cast<int32_t>(*config.eos_token_id))
          : std::vector<int32_t>(r.tokens.begin() + r.prompt_length, r.tokens.end());
  std::string text = s.has_tokenizer() ? s.tokenizer().decode(gen, true) : "";
  int64_t model_steps = 0;
  double step_ms = 0, max_arena = 0, max_peak = 0, avg_sum = 0;
  for (const auto& e : r.steps) {
    if (!e.ran_model) continue;
    ++model_steps;
    step_ms += e.stats.ms;
    max_arena = std::max(max_arena, static_cast<double>(e.stats.arena_bytes));
    max_peak = std::max(max_peak, static_cast<double>(e.stats.peak_live));
    avg_sum += e.stats.avg_live;
  }
  if (f.format == "text") {
    if (s.has_tokenizer())
      fmt::print("{}\n", text);
    else
      fmt::print("{}\n", fmt::join(gen, ","));
    if (progress)
      fmt::print(stderr, "mosaic: {} tokens in {:.2f} s ({} model steps, {:.1f} ms/step, {:.1f} tokens/s)\n",
                 f.gen_length, r.total_ms / 1000, model_steps, r.total_ms / std::max<int64_t>(model_steps, 1),
                 f.gen_length / (r.total_ms / 1000));
    return;
  }
  nlohmann::json j;
  j["model"] = s.model().dir();
  j["family"] = config.family;
  j["backend"] = s.backend_name();
  j["gpus"] = ranks;
  if (s.model().ranks() > 0) j["exchange"] = parallel::exchange_name(s.model().exchange());
  j["prompt_tokens"] = prompt;
  j["output_tokens"] = gen;
  j["text"] = text;
  j["settings"] = settings;
  j["timings"] = {{"total_ms", r.total_ms}, {"model_steps", model_steps},
                  {"ms_per_step", model_steps ? step_ms / model_steps : 0.0},
                  {"tokens_per_step", static_cast<double>(f.gen_length) / std::max<int64_t>(model_steps, 1)},
                  {"tokens_per_s", f.gen_length / (r.total_ms / 1000)}};
  j["memory"] = {{"weights_bytes", s.backend().weight_bytes()},
                 {"arena_bytes_max", max_arena},
                 {"peak_live_bytes_max", max_peak},
                 {"avg_live_bytes_mean", model_steps ? avg_sum / model_steps : 0.0},
                 {"cache_bytes", gen_plan.cache_bytes},
                 {"arena_mapped_bytes", s.backend().arena_mapped_bytes()},
                 {"peak_device_bytes", s.backend().peak_device_bytes()}};
  if (offload) {
    int64_t pairs = 0, gpu = 0, copies = 0;
    for (int l : offload->layers()) {
      const offload::LayerStats& t = offload->stats(l);
      pairs += t.pairs, gpu += t.gpu_pairs, copies += t.swaps;
    }
    j["offload"] = {{"policy", offload::policy_name(offload->policy())},
                    {"gpu_experts", offload->slots()},
                    {"refresh_interval", offload->refresh_interval()},
                    {"routed_pairs", pairs},
                    {"gpu_hit_rate", pairs ? static_cast<double>(gpu) / static_cast<double>(pairs) : 0.0},
                    {"copies", copies}};
  }
  fmt::print("{}\n", j.dump(2));
}

}  // namespace

void add_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* c = app.add_subcommand(
      "generate", "Generate text with the model's official sampler (LLaDA's generate(), Dream's diffusion_generate(), "
                  "LLaDA2.0's generate())");
  add_session_flags(c, f->session);
  add_gpus_flag(c, f->session);
  c->add_option("--prompt", f->prompt, "Prompt text (default: \"Once upon a time\")");
  f->prompt_tokens_flag =
      c->add_option("--prompt-tokens", f->prompt_tokens, "Prompt as comma-separated token ids, e.g. 1,2,3");
  c->add_flag("--chat", f->chat, "Wrap the prompt in the model's chat template (instruct models)");
  c->add_option("--gen-length", f->gen_length, "Tokens to generate")->capture_default_str();
  f->steps_flag = c->add_option("--steps", f->steps, "Denoising steps in total (a multiple of the number of blocks); "
                                "default: LLaDA --gen-length (one token per step), Dream 128; "
                                "LLaDA2.0: steps per block (default: --block-length)");
  f->block_length_flag = c->add_option("--block-length", f->block_length,
                "Block length (divides --gen-length); default: for LLaDA the largest divisor of --gen-length up to 32, "
                "the whole generation for Dream "
                "(its official single-block algorithm; smaller blocks restart Dream's timesteps in every block); "
                "LLaDA2.0: 32, blocks counted from position 0 (it need not divide --gen-length)");
  c->add_option("--temperature", f->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  c->add_option("--seed", f->seed, "Seed of the sampling noise (temperature > 0, random choices)")
      ->capture_default_str();
  f->llada_only = {
      c->add_option("--cfg-scale", f->cfg_scale, "LLaDA: classifier-free guidance scale; 0 = off")
          ->capture_default_str(),
      c->add_option("--remasking", f->remasking, "LLaDA: which tokens to commit each step: low_confidence | random")
          ->capture_default_str(),
  };
  f->dream_only = {
      c->add_option("--alg", f->alg,
                    "Dream: origin | maskgit_plus | topk_margin | entropy (how each step picks the tokens it commits)")
          ->capture_default_str(),
      c->add_option("--alg-temp", f->alg_temp,
                    "Dream: > 0 samples the committed positions from softmax(confidence / alg-temp); 0 = top-k")
          ->capture_default_str(),
      c->add_option("--eps", f->eps, "Dream: the last timestep of linspace(1, eps, steps + 1)")->capture_default_str(),
  };
  f->filters = {
      c->add_option("--top-p", f->top_p, "Dream, LLaDA2.0: nucleus filter before the softmax; 1 = off")
          ->capture_default_str(),
      c->add_option("--top-k", f->top_k, "Dream, LLaDA2.0: keep the k largest logits before the softmax; 0 = off")
          ->capture_default_str(),
  };
  f->llada2_only = {
      c->add_option("--minimal-topk", f->minimal_topk,
                    "LLaDA2.0: steps per block are capped at --gen-length / this (the official minimal_topk)")
          ->capture_default_str(),
      c->add_flag("--eos-early-stop", f->eos_early_stop,
                  "LLaDA2.0: stop as soon as an eos is committed with no mask before it (a finished block holding "
                  "an eos always stops the generation)"),
  };
  c->add_option("--cache", f->cache,
                "Key/value cache: none | prefix | dual (Fast-dLLM: a block's first step stores the keys/values "
                "before it / of every position, its later steps run only the block) | sparse (Sparse-dLLM: a "
                "block's second step keeps the most attended positions). LLaDA2.0: none | prefix (exact: each step "
                "runs only the rows not cached yet)")
      ->capture_default_str();
  f->threshold_flag = c->add_option("--threshold", f->threshold,
                "Parallel decoding. LLaDA, Dream (Fast-dLLM): each step commits the most confident masked token "
                "of the block and every other one whose confidence is >= this, in (0, 1]; the block ends when it "
                "has no masks left; default: the --steps schedule. LLaDA2.0 (its generate()): each step commits "
                "the block's masked tokens whose confidence is > this when there are at least the scheduled "
                "number of them, in [0, 1]; default 0.95");
  f->sparse_flags = {
      c->add_option("--sparse-keep", f->sparse_keep,
                    "sparse cache: the fraction of positions outside the block kept, in (0, 1]")
          ->capture_default_str(),
      c->add_option("--sparse-kernel", f->sparse_kernel, "sparse cache: the max-pool width over the attention scores "
                    "(odd)")->capture_default_str(),
  };
  c->add_option("--format", f->format, "Output: text | json (json: token ids, text, timings, memory)")
      ->capture_default_str();
  c->add_flag("--stream", f->stream, "Show the partially denoised text on stderr after every step: redrawn in place "
              "on a terminal, one line per step ([step N] text, newlines as \\n) otherwise");
  c->add_flag("-q,--quiet", f->quiet, "No progress output on stderr");
  add_offload_flags(c, f->offload);
  c->callback([f] { run_generate(*f); });
}

}  // namespace mosaic::cli
