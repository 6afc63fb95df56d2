// mosaic generate: prompt -> tokens -> LLaDA sampler -> text (or JSON).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "decode/llada_sampler.h"
#include "io/chat_template.h"
#include "io/tokenizer.h"

namespace mosaic::cli {

namespace {

struct GenerateFlags {
  SessionFlags session;
  std::string prompt, prompt_tokens, format = "text", remasking = "low_confidence";
  bool chat = false, quiet = false, stream = false;
  GenerateOptions opt{128, 128, 32};
};

std::vector<int32_t> parse_token_list(const std::string& s, int64_t limit) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    MOSAIC_CHECK(a != std::string::npos, "--prompt-tokens '{}': empty entry (use comma-separated ids: 1,2,3)", s);
    item = item.substr(a, b - a + 1);
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    MOSAIC_CHECK(*end == '\0' && end != item.c_str(), "--prompt-tokens: '{}' is not an integer token id", item);
    MOSAIC_CHECK(v >= 0 && v < limit, "--prompt-tokens: id {} is outside the model's vocabulary [0, {})", v, limit);
    ids.push_back(static_cast<int32_t>(v));
  }
  MOSAIC_CHECK(!ids.empty(), "--prompt-tokens is empty");
  return ids;
}

void run_generate(const GenerateFlags& f) {
  MOSAIC_CHECK(f.prompt.empty() || f.prompt_tokens.empty(), "give either --prompt or --prompt-tokens, not both");
  MOSAIC_CHECK(f.format == "text" || f.format == "json", "--format '{}': use text or json", f.format);
  GenerateOptions opt = f.opt;
  opt.remasking = parse_remasking(f.remasking);
  validate_generate_options(opt);  // before loading gigabytes of weights

  Session s(f.session, !f.quiet);
  const auto& cfg = s.model().config();
  std::vector<int32_t> prompt;
  if (!f.prompt_tokens.empty()) {
    prompt = parse_token_list(f.prompt_tokens, cfg.embedding_size);
  } else {
    const io::Tokenizer& tok = s.tokenizer();
    std::string text = f.prompt.empty() ? std::string("Once upon a time") : f.prompt;
    if (f.chat)
      prompt = tok.encode(io::apply_chat_template(io::arch_name(cfg.arch), {{"user", text}}, true), true);
    else
      prompt = s.encode_plain(text);
  }
  MOSAIC_CHECK(!prompt.empty(), "the prompt encodes to zero tokens; give a non-empty --prompt");
  const int64_t total = static_cast<int64_t>(prompt.size()) + opt.gen_length;
  if (cfg.max_seq_len > 0 && total > cfg.max_seq_len && !f.quiet)
    fmt::print(stderr, "mosaic: note: {} tokens is past the {} the model was trained for (config.json "
               "max sequence length); quality may drop\n", total, cfg.max_seq_len);

  if (cfg.arch == io::Arch::Dream && !f.quiet)
    fmt::print(stderr, "mosaic: note: Dream model: the forward pass is Dream's, but the sampler is LLaDA's "
               "(low-confidence / random remasking with its block schedule); Dream's own diffusion_generate "
               "algorithms (entropy, maskgit_plus, top-p) are not implemented yet, so tokens will differ from "
               "Dream's reference sampler\n");

  const bool progress = !f.quiet;
  StepStats last_run;  // steps that commit nothing are skipped: report the last that ran
  auto on_step = [&](const StepEvent& ev, const std::vector<int32_t>& x) {
    if (ev.committed > 0) last_run = ev.stats;
    if (f.stream && s.has_tokenizer() && f.format == "text") {
      std::vector<int32_t> gen(x.begin() + static_cast<int64_t>(prompt.size()), x.end());
      fmt::print(stderr, "\r[step {}] {}", ev.global_step + 1, s.tokenizer().decode(gen, true));
    }
    if (progress && ev.step + 1 == ev.steps_per_block)
      fmt::print(stderr, "mosaic: block {}/{} done ({} steps, last model step {:.1f} ms, arena {})\n", ev.block + 1,
                 ev.num_blocks, ev.steps_per_block, last_run.ms, human_bytes(static_cast<double>(last_run.arena_bytes)));
  };
  GenerateResult r = llada_generate(s.model(), prompt, opt, on_step);
  if (f.stream) fmt::print(stderr, "\n");

  std::vector<int32_t> gen(r.tokens.begin() + r.prompt_length, r.tokens.end());
  std::string text = s.has_tokenizer() ? s.tokenizer().decode(gen, true) : "";
  if (f.format == "text") {
    if (s.has_tokenizer())
      fmt::print("{}\n", text);
    else
      fmt::print("{}\n", fmt::join(gen, ","));
    if (progress) {
      int64_t model_steps = 0;
      for (const auto& e : r.steps) model_steps += e.committed > 0;
      fmt::print(stderr, "mosaic: {} tokens in {:.2f} s ({} steps, {:.1f} ms/step, {:.1f} tokens/s)\n",
                 opt.gen_length, r.total_ms / 1000, model_steps, r.total_ms / std::max<int64_t>(model_steps, 1),
                 opt.gen_length / (r.total_ms / 1000));
    }
    return;
  }
  nlohmann::json j;
  j["model"] = s.model().dir();
  j["backend"] = s.backend_name();
  j["prompt_tokens"] = prompt;
  j["output_tokens"] = gen;
  j["text"] = text;
  j["settings"] = {{"gen_length", opt.gen_length}, {"steps", opt.steps}, {"block_length", opt.block_length},
                   {"temperature", opt.temperature}, {"cfg_scale", opt.cfg_scale}, {"remasking", f.remasking},
                   {"seed", opt.seed}};
  double step_ms = 0, max_arena = 0, max_peak = 0, avg_sum = 0;
  int64_t n = 0;
  for (const auto& e : r.steps) {
    if (e.committed == 0) continue;
    ++n;
    step_ms += e.stats.ms;
    max_arena = std::max(max_arena, static_cast<double>(e.stats.arena_bytes));
    max_peak = std::max(max_peak, static_cast<double>(e.stats.peak_live));
    avg_sum += e.stats.avg_live;
  }
  j["timings"] = {{"total_ms", r.total_ms}, {"model_steps", n}, {"ms_per_step", n ? step_ms / n : 0.0},
                  {"tokens_per_s", opt.gen_length / (r.total_ms / 1000)}};
  j["memory"] = {{"weights_bytes", s.backend().weight_bytes()},
                 {"arena_bytes_max", max_arena},
                 {"peak_live_bytes_max", max_peak},
                 {"avg_live_bytes_mean", n ? avg_sum / n : 0.0},
                 {"arena_mapped_bytes", s.backend().arena_mapped_bytes()},
                 {"peak_device_bytes", s.backend().peak_device_bytes()}};
  fmt::print("{}\n", j.dump(2));
}

}  // namespace

void add_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* c = app.add_subcommand("generate", "Generate text with a LLaDA-family model (the official sampler)");
  add_session_flags(c, f->session);
  c->add_option("--prompt", f->prompt, "Prompt text (default: \"Once upon a time\")");
  c->add_option("--prompt-tokens", f->prompt_tokens, "Prompt as comma-separated token ids, e.g. 1,2,3");
  c->add_flag("--chat", f->chat, "Wrap the prompt in the model's chat template (instruct models)");
  c->add_option("--gen-length", f->opt.gen_length, "Tokens to generate")->capture_default_str();
  c->add_option("--steps", f->opt.steps, "Denoising steps in total (a multiple of the number of blocks)")
      ->capture_default_str();
  c->add_option("--block-length", f->opt.block_length, "Semi-autoregressive block length (divides --gen-length)")
      ->capture_default_str();
  c->add_option("--temperature", f->opt.temperature, "Gumbel-max sampling temperature; 0 = greedy")
      ->capture_default_str();
  c->add_option("--cfg-scale", f->opt.cfg_scale, "Classifier-free guidance scale; 0 = off")->capture_default_str();
  c->add_option("--remasking", f->remasking, "Which tokens to commit each step: low_confidence | random")
      ->capture_default_str();
  c->add_option("--seed", f->opt.seed, "Seed of the sampling noise (temperature > 0, random remasking)")
      ->capture_default_str();
  c->add_option("--format", f->format, "Output: text | json (json: token ids, text, timings, memory)")
      ->capture_default_str();
  c->add_flag("--stream", f->stream, "Show the partially denoised text on stderr after every step");
  c->add_flag("-q,--quiet", f->quiet, "No progress output on stderr");
  c->callback([f] { run_generate(*f); });
}

}  // namespace mosaic::cli
