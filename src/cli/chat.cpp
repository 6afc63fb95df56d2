// mosaic chat: a multi-turn chat in the terminal with the model's chat template. On a
// terminal the answer is redrawn in place at every step as it denoises (masked positions as
// placeholders, the step's new tokens highlighted); piped, only the answers are written.
#include <fmt/format.h>

#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/chat_view.h"
#include "cli/commands.h"
#include "cli/session.h"
#include "core/error.h"
#include "decode/engine.h"
#include "serve/api_error.h"
#include "serve/generation_job.h"
#include "serve/generation_setup.h"

namespace mosaic::cli {

namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_generating{false};

extern "C" void on_chat_sigint(int) {
  if (g_generating) {
    g_interrupted = true;
  } else {
    const char msg[] = "\n(Ctrl-C stops an answer; /quit or Ctrl-D leaves)\n> ";
    [[maybe_unused]] ssize_t n = write(STDOUT_FILENO, msg, sizeof(msg) - 1);
  }
}

struct ChatFlags {
  SessionFlags session;
  std::string system, cache = "none";
  int64_t max_tokens = 128, steps = 0, block_length = 0;
  double temperature = 0.0, threshold = 0.0;
  uint64_t seed = 0;
  bool quiet = false;
};

// The request settings /set changes.
struct ChatSettings {
  int64_t max_tokens, steps, block_length;
  double temperature, threshold;
  std::string cache;
  uint64_t seed;
  std::string show() const {
    return fmt::format("max_tokens {}  steps {}  block_length {}  temperature {}  threshold {}  cache {}  seed {}",
                       max_tokens, steps ? std::to_string(steps) : "default",
                       block_length ? std::to_string(block_length) : "default", temperature,
                       threshold > 0 ? fmt::format("{}", threshold) : "off", cache, seed);
  }
};

constexpr const char* kHelp =
    "/reset               forget the conversation\n"
    "/set KEY VALUE       max_tokens | steps | block_length (0: the default) | temperature | threshold (0: off) |\n"
    "                     cache (none, prefix, dual, sparse) | seed\n"
    "/show                the settings\n"
    "/quit                leave (also Ctrl-D); Ctrl-C stops the answer being generated\n";

struct TerminalSize {
  int cols = 80, rows = 24;  // when stdout does not say
};

TerminalSize terminal_size() {
  TerminalSize t;
  winsize w{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0) {
    if (w.ws_col > 0) t.cols = w.ws_col;
    if (w.ws_row > 0) t.rows = w.ws_row;
  }
  return t;
}

// "/set steps 64": changes one setting; the message says what happened.
std::string set_setting(ChatSettings& s, const std::string& line) {
  std::istringstream in(line);
  std::string cmd, key, value;
  in >> cmd >> key >> value;
  if (key.empty() || value.empty()) return "usage: /set KEY VALUE (see /help)";
  try {
    if (key == "max_tokens" || key == "gen_length") {
      const int64_t v = std::stoll(value);
      if (v < 1) return "max_tokens must be at least 1";
      s.max_tokens = v;
    } else if (key == "steps") {
      const int64_t v = std::stoll(value);
      if (v < 0) return "steps must be >= 0 (0: the default)";
      s.steps = v;
    } else if (key == "block_length") {
      const int64_t v = std::stoll(value);
      if (v < 0) return "block_length must be >= 0 (0: the default)";
      s.block_length = v;
    } else if (key == "temperature") {
      const double v = std::stod(value);
      if (v < 0) return "temperature must be >= 0";
      s.temperature = v;
    } else if (key == "threshold") {
      const double v = std::stod(value);
      if (v < 0 || v > 1) return "threshold must be in [0, 1] (0: off)";
      s.threshold = v;
    } else if (key == "cache") {
      parse_cache_mode(value);
      s.cache = value;
    } else if (key == "seed") {
      s.seed = std::stoull(value);
    } else {
      return fmt::format("unknown setting '{}' (see /help)", key);
    }
  } catch (const std::logic_error&) {
    return fmt::format("'{}' is not a value for {}", value, key);
  } catch (const Error& e) {
    return e.what();
  }
  return s.show();
}

void run_chat(const ChatFlags& f) {
  const bool tty = isatty(STDOUT_FILENO) != 0 && isatty(STDIN_FILENO) != 0;
  Session s(f.session, !f.quiet);
  const io::Tokenizer& tok = s.tokenizer();
  Model& model = s.model();
  ChatSettings set{f.max_tokens, f.steps, f.block_length, f.temperature, f.threshold, f.cache, f.seed};
  parse_cache_mode(set.cache);

  struct sigaction sa = {};
  sa.sa_handler = on_chat_sigint;
  sa.sa_flags = SA_RESTART;  // a Ctrl-C at the prompt does not end the read
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);

  ChatMessages history;
  if (!f.system.empty()) history.emplace_back("system", f.system);
  if (tty)
    fmt::print("mosaic chat: {} on {}. /help for commands; Ctrl-C stops an answer; /quit leaves.\n",
               std::filesystem::path(model.dir()).filename().string(), s.backend_name());
  for (std::string line;;) {
    if (tty) {
      fmt::print("\n\x1b[1m>\x1b[0m ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/help") {
      fmt::print("{}", kHelp);
      continue;
    }
    if (line == "/reset") {
      history.erase(std::remove_if(history.begin(), history.end(), [](const auto& m) { return m.first != "system"; }),
                    history.end());
      fmt::print("(the conversation is forgotten)\n");
      continue;
    }
    if (line == "/show") {
      fmt::print("{}\n", set.show());
      continue;
    }
    if (line.rfind("/set", 0) == 0) {
      fmt::print("{}\n", set_setting(set, line));
      continue;
    }
    if (line[0] == '/') {
      fmt::print("unknown command {} (see /help)\n", line);
      continue;
    }

    history.emplace_back("user", line);
    serve::CompletionRequest req;
    req.chat = true;
    req.max_tokens = set.max_tokens;
    if (set.steps) req.steps = set.steps;
    if (set.block_length) req.block_length = set.block_length;
    if (set.threshold > 0) req.threshold = set.threshold;
    req.temperature = set.temperature;
    req.cache = set.cache;
    req.seed = set.seed;
    // The oldest turns go when the conversation would not fit the memory budget (kept when even
    // the newest alone does not).
    std::optional<serve::PreparedGeneration> g;
    ChatMessages trial = history;
    int dropped = 0;
    for (;;) {
      req.messages = trial;
      try {
        g = serve::prepare_generation(model, tok, req, {});
        model.check_generation(g->cache, g->shape, g->guided);
        break;
      } catch (const OutOfBudget& e) {
        auto first = std::find_if(trial.begin(), trial.end(), [](const auto& m) { return m.first != "system"; });
        if (trial.end() - first > 1) {
          trial.erase(first, std::min(first + 2, trial.end() - 1));
          ++dropped;
          continue;
        }
        fmt::print(stderr, "mosaic: {}\n", e.what());
      } catch (const std::exception& e) {  // ApiError, an encoding error
        fmt::print(stderr, "mosaic: {}\n", e.what());
      }
      g.reset();
      break;
    }
    if (g && dropped > 0) {
      history = trial;
      fmt::print(stderr, "mosaic: the conversation would not fit the memory budget: dropped its oldest turn{}\n",
                 dropped > 1 ? fmt::format("s ({})", dropped) : "");
    }
    if (!g) {
      history.pop_back();
      continue;
    }
    const int64_t prompt_tokens = static_cast<int64_t>(g->prompt.size());
    serve::GenerationJob job(std::move(*g), tok);
    serve::PreparedGeneration& gen = job.generation();
    Sequence& seq = gen.sequence;
    const int64_t P = seq.prompt_length;
    std::vector<int32_t> region(seq.tokens.begin() + P, seq.tokens.begin() + P + gen.max_tokens);
    AnswerState view{&region, seq.mask_id, std::vector<bool>(region.size()), gen.end_ids};
    // Each step replaces what the last drew: up to its first line, clear, draw. While it
    // denoises, an answer taller than the screen shows the lines around the step's fresh tokens
    // (the cursor cannot go above the top); the finished answer is drawn whole and scrolls.
    int drawn_lines = 0;
    size_t focus = 0;  // a step that commits nothing keeps the last one's view
    auto redraw = [&](const std::string& text, bool whole = false) {
      const TerminalSize term = terminal_size();
      if (const size_t at = fresh_at(text); at != std::string::npos) focus = at;
      const std::string shown = whole ? text : visible_lines(text, term.cols, term.rows - 1, focus);
      std::string out = "\r";
      if (drawn_lines > 1) out += fmt::format("\x1b[{}A", drawn_lines - 1);
      out += "\x1b[J" + shown;
      fmt::print("{}", out);
      std::fflush(stdout);
      drawn_lines = terminal_lines(shown, term.cols);
    };
    g_interrupted = false;
    g_generating = true;
    int64_t steps = 0;
    double step_ms = 0;
    const auto t0 = std::chrono::steady_clock::now();
    bool done = false, stopped = false;
    try {
      while (!done) {
        if (g_interrupted) {
          stopped = true;
          break;
        }
        const StepEvent ev = run_step(model, *gen.sampler, seq);
        if (ev.ran_model) ++steps, step_ms += ev.stats.ms;
        done = job.after_step();
        if (tty) {
          for (size_t i = 0; i < region.size(); ++i) {
            const int32_t t = seq.tokens[P + static_cast<int64_t>(i)];
            view.fresh[i] = region[i] == seq.mask_id && t != seq.mask_id;
            region[i] = t;
          }
          redraw(render_answer(tok, view, true));
        }
      }
    } catch (const std::exception& e) {
      g_generating = false;
      fmt::print(stderr, "\nmosaic: the answer failed: {}\n", e.what());
      history.pop_back();
      continue;
    }
    g_generating = false;
    std::string text;
    for (serve::JobEvent ev; job.next(ev, std::chrono::milliseconds(0));)
      if (ev.kind == serve::JobEvent::Kind::Text) text += ev.text;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stopped) {
      if (tty) redraw(render_answer(tok, view, true), /*whole=*/true);
      fmt::print("\n[stopped]\n");
      history.pop_back();
      continue;
    }
    if (tty)
      redraw(text, /*whole=*/true);
    else
      fmt::print("{}", text);
    fmt::print("\n");
    std::fflush(stdout);
    history.emplace_back("assistant", text);
    if (!f.quiet) {
      const std::string stats = fmt::format(
          "[{} tokens in {:.2f} s: {} steps, {:.1f} ms/step, {:.1f} tokens/s; prompt {} tokens]", job.completion_tokens(),
          secs, steps, steps ? step_ms / static_cast<double>(steps) : 0.0,
          static_cast<double>(job.completion_tokens()) / std::max(secs, 1e-9), prompt_tokens);
      if (tty)
        fmt::print("\x1b[2m{}\x1b[0m\n", stats);
      else
        fmt::print(stderr, "{}\n", stats);
    }
  }
  if (tty) fmt::print("\n");
}

}  // namespace

void add_chat(CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  CLI::App* c = app.add_subcommand(
      "chat", "Chat with the model in the terminal (its chat template, the conversation kept within the memory "
              "budget): on a terminal each answer is redrawn as it denoises, masked positions as placeholders and "
              "each step's new tokens highlighted; piped, only the answers are written. /help lists the commands");
  add_session_flags(c, f->session);
  c->add_option("--system", f->system, "A system message that starts the conversation");
  c->add_option("--max-tokens,--gen-length", f->max_tokens, "Tokens per answer")->capture_default_str();
  c->add_option("--steps", f->steps, "Denoising steps per answer (default: the sampler's, as `serve`)");
  c->add_option("--block-length", f->block_length, "Block length (default: the sampler's, as `serve`)");
  c->add_option("--temperature", f->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  c->add_option("--threshold", f->threshold, "Parallel decoding threshold (0: the steps' schedule)")
      ->capture_default_str();
  c->add_option("--cache", f->cache, "none | prefix | dual | sparse")->capture_default_str();
  c->add_option("--seed", f->seed, "Seed of the sampling noise")->capture_default_str();
  c->add_flag("-q,--quiet", f->quiet, "No loading progress or per-answer figures");
  c->callback([f] { run_chat(*f); });
}

}  // namespace mosaic::cli
