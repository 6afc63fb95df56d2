// mosaic eval: the diffusion loss and masked-token accuracy of a model on held-out text.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iterator>

#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "decode/diffusion_loss.h"

namespace mosaic::cli {

namespace {

struct EvalFlags {
  SessionFlags session;
  std::string text_path, format = "text";
  LossOptions opt;
};

void run_eval(const EvalFlags& f) {
  MOSAIC_CHECK(f.format == "text" || f.format == "json", "--format '{}': use text or json", f.format);
  Session s(f.session, f.format == "text");
  std::string text;
  {
    std::ifstream in(f.text_path, std::ios::binary);
    MOSAIC_CHECK(in.good(), "--text '{}': cannot open the file", f.text_path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto tokens = s.tokenizer().encode(text, false);
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
  c->add_option("--seq-len", f->opt.seq_len, "Tokens per window (BOS included)")->capture_default_str();
  c->add_option("--t-draws", f->opt.t_draws, "Masking levels per window, t = (j+0.5)/n")->capture_default_str();
  c->add_option("--max-windows", f->opt.max_windows, "Score at most this many windows (0 = all)")
      ->capture_default_str();
  c->add_option("--seed", f->opt.seed, "Seed of the masks")->capture_default_str();
  c->add_option("--format", f->format, "text | json")->capture_default_str();
  c->callback([f] { run_eval(*f); });
}

}  // namespace mosaic::cli
