// mosaic eval --generate: how good the generations of each cache mode are on held-out text.
// Every window of the text is split into a prompt and a continuation; each mode generates
// the continuation with the family's sampler (greedy), and the table gives the fraction of
// generated tokens equal to the text's, the agreement with the first mode listed (token by
// token), and the model steps taken (threshold decoding takes fewer).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>

#include "cli/eval_internal.h"
#include "core/error.h"
#include "decode/cached_steps.h"
#include "decode/engine.h"

namespace mosaic::cli {

namespace {

std::unique_ptr<Sampler> eval_sampler(const Model& m, int64_t prompt_length, const GenerationEvalOptions& o,
                                      const EvalMode& mode) {
  return default_sampler(m, prompt_length, o.gen_length, o.steps, o.block_length,
                         {mode.cache, o.sparse_keep, o.sparse_kernel}, mode.threshold);
}

struct ModeScore {
  int64_t tokens = 0, correct = 0, agree = 0, model_steps = 0;
  double seconds = 0;
};

}  // namespace

std::vector<EvalMode> parse_eval_modes(const std::string& s) {
  std::vector<EvalMode> modes;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t at = item.find('@');
    EvalMode m{parse_cache_mode(item.substr(0, at))};
    if (at != std::string::npos) {
      char* end = nullptr;
      m.threshold = std::strtod(item.c_str() + at + 1, &end);
      MOSAIC_CHECK(end && *end == '\0' && end != item.c_str() + at + 1, "--cache '{}': the threshold after '@' is not "
                   "a number", item);
      validate_threshold(m.threshold);
    }
    modes.push_back(m);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return modes;
}

void eval_generations(Session& s, const std::vector<int32_t>& text, const GenerationEvalOptions& o,
                      const std::string& format) {
  // Windows start with BOS when the model has one, as in training and `eval`'s loss.
  const std::optional<int32_t> bos = s.tokenizer().bos_id;
  const std::vector<EvalMode>& modes = o.modes;
  MOSAIC_CHECK(!modes.empty(), "--cache is empty: give modes such as none,dual");
  MOSAIC_CHECK(o.prompt_length > 0, "--prompt-length must be positive (got {})", o.prompt_length);
  const int64_t body = bos ? o.prompt_length - 1 : o.prompt_length;
  MOSAIC_CHECK(body > 0, "--prompt-length {} leaves no text after BOS", o.prompt_length);
  const int64_t window = body + o.gen_length;
  const int64_t available = static_cast<int64_t>(text.size()) / window;
  const int64_t windows = o.max_windows > 0 ? std::min(available, o.max_windows) : available;
  MOSAIC_CHECK(windows > 0, "--text holds {} tokens: not one window of --prompt-length + --gen-length = {}",
               text.size(), window);
  Model& m = s.model();
  const int32_t mask = static_cast<int32_t>(m.config().mask_token_id);
  // Options and memory are checked before the first window: a cache that does not fit is refused now.
  for (const EvalMode& mode : modes) {
    const int64_t tokens = static_cast<int64_t>(bos.has_value()) + window;
    eval_sampler(m, tokens - o.gen_length, o, mode);
    m.check_generation({mode.cache, o.sparse_keep, o.sparse_kernel}, {tokens, o.block_length, o.block_length}, false);
  }

  std::vector<ModeScore> score(modes.size());
  for (int64_t w = 0; w < windows; ++w) {
    const auto begin = text.begin() + w * window;
    std::vector<int32_t> prompt;
    if (bos) prompt.push_back(*bos);
    prompt.insert(prompt.end(), begin, begin + body);
    const std::vector<int32_t> truth(begin + body, begin + window);
    std::vector<int32_t> first;
    for (size_t i = 0; i < modes.size(); ++i) {
      const int64_t P = static_cast<int64_t>(prompt.size());
      auto sampler = eval_sampler(m, P, o, modes[i]);
      Sequence seq = Sequence::start(prompt, sampler->sequence_length(P, o.gen_length) - P, mask, 0);
      ModeScore& sc = score[i];
      GenerateResult r = run_generation(m, *sampler, seq, [&](const StepEvent& ev, const std::vector<int32_t>&) {
        sc.model_steps += ev.ran_model;
      });
      sc.seconds += r.total_ms / 1000;
      const std::vector<int32_t> gen(r.tokens.begin() + P, r.tokens.begin() + P + o.gen_length);
      if (i == 0) first = gen;
      for (int64_t k = 0; k < o.gen_length; ++k) {
        sc.correct += gen[k] == truth[k];
        sc.agree += gen[k] == first[k];
      }
      sc.tokens += o.gen_length;
    }
    if (format == "text") fmt::print(stderr, "\rmosaic: window {}/{}", w + 1, windows);
  }
  if (format == "text") fmt::print(stderr, "\n");

  nlohmann::json rows = nlohmann::json::array();
  if (format == "text")
    fmt::print("{:>8} {:>10} {:>12} {:>14} {:>12} {:>12} {:>9}\n", "cache", "threshold", "text match",
               "agree w/ 1st", "model steps", "tokens/step", "seconds");
  for (size_t i = 0; i < modes.size(); ++i) {
    const ModeScore& sc = score[i];
    const double match = static_cast<double>(sc.correct) / sc.tokens, agree = static_cast<double>(sc.agree) / sc.tokens;
    const double per_step = static_cast<double>(sc.tokens) / std::max<int64_t>(sc.model_steps, 1);
    if (format == "text")
      fmt::print("{:>8} {:>10} {:>12.4f} {:>14.4f} {:>12} {:>12.2f} {:>9.2f}\n", cache_mode_name(modes[i].cache),
                 modes[i].threshold > 0 ? fmt::format("{}", modes[i].threshold) : "-", match, agree, sc.model_steps,
                 per_step, sc.seconds);
    rows.push_back({{"cache", cache_mode_name(modes[i].cache)},
                    {"threshold", modes[i].threshold > 0 ? nlohmann::json(modes[i].threshold) : nlohmann::json(nullptr)},
                    {"text_match", match},
                    {"agreement_with_first", agree},
                    {"model_steps", sc.model_steps},
                    {"tokens_per_step", per_step},
                    {"seconds", sc.seconds}});
  }
  if (format == "json") {
    nlohmann::json j = {{"model", m.dir()},
                        {"windows", windows},
                        {"prompt_length", o.prompt_length},
                        {"gen_length", o.gen_length},
                        {"steps", o.steps},
                        {"block_length", o.block_length},
                        {"results", rows}};
    fmt::print("{}\n", j.dump(2));
  }
}

}  // namespace mosaic::cli
