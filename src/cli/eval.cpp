// mosaic eval: the diffusion loss and masked-token accuracy of a model on held-out text.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <vector>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "cli/eval_internal.h"
#include "decode/diffusion_loss.h"

namespace mosaic::cli {

namespace {

struct EvalFlags {
  SessionFlags session;
  std::string text_path, format = "text";
  LossOptions opt;
  // --generate: score generations per cache mode instead of the loss.
  bool generate = false;
  std::string cache = "none,prefix,dual,sparse";
  GenerationEvalOptions gen;
  std::vector<CLI::Option*> sparse_flags;
};

void run_eval(const EvalFlags& f) {
  MOSAIC_CHECK(f.format == "text" || f.format == "json", "--format '{}': use text or json", f.format);
  GenerationEvalOptions o = f.gen;
  if (f.generate) {  // the flags first, before the model loads
    o.modes = parse_eval_modes(f.cache);
    validate_cache_options({CacheMode::Sparse, o.sparse_keep, o.sparse_kernel});
    check_sparse_flags(f.sparse_flags, std::any_of(o.modes.begin(), o.modes.end(),
                                                   [](const EvalMode& m) { return m.cache == CacheMode::Sparse; }));
  }
  Session s(f.session, f.format == "text");
  std::string text;
  {
    std::ifstream in(f.text_path, std::ios::binary);
    MOSAIC_CHECK(in.good(), "--text '{}': cannot open the file", f.text_path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto tokens = s.tokenizer().encode(text, false);
  if (f.generate) {
    eval_generations(s, tokens, o, f.format);
    return;
  }
  // The loss masks every position at once under the model's own attention: LLaDA's and Dream's
  // objective. A block-diffusion model is trained and scored block by block on a clean prefix.
  MOSAIC_CHECK(s.model().family().default_sampler() != SamplerKind::Llada2,
               "{}: eval's loss is the masked-diffusion bound of LLaDA and Dream; LLaDA2.0 is a block-diffusion "
               "model (each block scored on the clean blocks before it), whose loss mosaic does not compute yet: "
               "use eval --generate", s.model().dir());
  auto t0 = std::chrono::steady_clock::now();
  LossResult r = diffusion_loss(s.model(), tokens, f.opt, s.tokenizer().bos_id);
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (f.format == "json") {
    nlohmann::json j = {{"model", s.model().dir()}, {"text", f.text_path},      {"tokens", tokens.size()},
                        {"windows", r.windows},     {"seq_len", f.opt.seq_len}, {"t_draws", f.opt.t_draws},
                        {"seed", f.opt.seed},       {"masked", r.masked},       {"loss", r.loss},
                        {"masked_ce", r.masked_ce}, {"accuracy", r.accuracy()}, {"seconds", sec}};
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("windows {} x {} tokens, {} masking levels, {} masked tokens scored ({:.1f} s)\n", r.windows,
             f.opt.seq_len, f.opt.t_draws, r.masked, sec);
  fmt::print("diffusion loss (ELBO term, per token)  {:.4f}\n", r.loss);
  fmt::print("masked-token cross-entropy              {:.4f}\n", r.masked_ce);
  fmt::print("masked-token accuracy                   {:.4f}\n", r.accuracy());
}

}  // namespace

void add_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* c = app.add_subcommand("eval", "Diffusion loss and masked-token accuracy on held-out text");
  add_session_flags(c, f->session);
  c->add_option("--text", f->text_path, "Held-out text file")->required();
  std::vector<CLI::Option*> loss_only = {
      c->add_option("--seq-len", f->opt.seq_len, "Tokens per window (BOS included)")->capture_default_str(),
      c->add_option("--t-draws", f->opt.t_draws, "Masking levels per window, t = (j+0.5)/n")->capture_default_str(),
      c->add_option("--max-windows", f->opt.max_windows, "Score at most this many windows (0 = all)")
          ->capture_default_str(),
      c->add_option("--seed", f->opt.seed, "Seed of the masks")->capture_default_str(),
  };
  c->add_option("--format", f->format, "text | json")->capture_default_str();
  CLI::Option* generate =
      c->add_flag("--generate", f->generate,
                  "Score generations instead: each window's first --prompt-length tokens are the prompt, the model "
                  "generates --gen-length more (greedy) with each --cache mode; reports the fraction equal to the "
                  "text, the agreement with the first mode, and the model steps taken");
  // A flag of the other mode would be silently ignored: refuse it instead.
  for (CLI::Option* o : loss_only) o->excludes(generate);
  for (CLI::Option* o : {
           c->add_option("--cache", f->cache,
                         "With --generate: the configurations to compare, each a cache mode with an optional "
                         "threshold after '@' (e.g. none,none@0.3,dual@0.3); the first is the agreement's baseline")
               ->capture_default_str(),
           c->add_option("--prompt-length", f->gen.prompt_length, "With --generate: prompt tokens per window")
               ->capture_default_str(),
           c->add_option("--gen-length", f->gen.gen_length, "With --generate: tokens generated per window")
               ->capture_default_str(),
           c->add_option("--steps", f->gen.steps, "With --generate: denoising steps")->capture_default_str(),
           c->add_option("--block-length", f->gen.block_length, "With --generate: block length")
               ->capture_default_str(),
           c->add_option("--windows", f->gen.max_windows, "With --generate: at most this many windows (0 = all)")
               ->capture_default_str(),
       })
    o->needs(generate);
  f->sparse_flags = {
      c->add_option("--sparse-keep", f->gen.sparse_keep, "With --generate: the sparse cache's kept fraction")
          ->capture_default_str()
          ->needs(generate),
      c->add_option("--sparse-kernel", f->gen.sparse_kernel, "With --generate: the sparse cache's pool width")
          ->capture_default_str()
          ->needs(generate),
  };
  c->callback([f] { run_eval(*f); });
}

}  // namespace mosaic::cli
