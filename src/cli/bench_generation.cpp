// mosaic bench --cache MODES: whole generations instead of single steps. For every length
// and cache mode, a random prompt of L - gen_length tokens is denoised with the family's
// sampler, one token per step (steps = gen_length: a fixed schedule, so random weights do not
// change the work), and the table gives tokens/s, the time of each kind of step, the caches'
// bytes and the speedup over the first mode listed.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "cli/bench_internal.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "decode/engine.h"

namespace mosaic::cli {

std::vector<int32_t> random_prompt(const io::ModelConfig& c, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t vocab = std::min(c.vocab_size, c.mask_token_id > 0 ? c.mask_token_id : c.vocab_size);
  std::vector<int32_t> x(static_cast<size_t>(n));
  for (auto& t : x) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return x;
}

TimedGeneration timed_generation(Model& m, const std::vector<int32_t>& prompt, const BenchFlags& f,
                                 const CacheOptions& cache) {
  TimedGeneration t;
  for (int rep = 0; rep <= f.warmup_generations; ++rep) {  // the first ones warm up
    t.kinds.clear();
    const int64_t P = static_cast<int64_t>(prompt.size());
    auto s = default_sampler(m, P, f.gen_length, f.gen_length, f.block_length, cache);
    Sequence seq = Sequence::start(prompt, s->sequence_length(P, f.gen_length) - P,
                                   static_cast<int32_t>(m.config().mask_token_id), 0);
    t.result = run_generation(m, *s, seq, [&](const StepEvent& ev, const std::vector<int32_t>&) {
      if (!ev.ran_model) return;
      t.kinds[ev.cache_step].steps += 1;
      t.kinds[ev.cache_step].ms += ev.stats.ms;
      t.arena = std::max(t.arena, ev.stats.arena_bytes);
    });
  }
  return t;
}

std::vector<CacheMode> parse_cache_modes(const std::string& s) {
  std::vector<CacheMode> modes;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) modes.push_back(parse_cache_mode(item));
  MOSAIC_CHECK(!modes.empty(), "--cache is empty: give modes such as none,dual");
  return modes;
}

nlohmann::json bench_generations(Model& m, const BenchFlags& f, const std::vector<int64_t>& lengths) {
  const std::vector<CacheMode> modes = parse_cache_modes(f.cache);
  nlohmann::json results = nlohmann::json::array();
  fmt::print("{:>9} {:>7} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>11} {:>11} {:>7}\n", "tokens", "cache", "total s",
             "tokens/s", "vs " + cache_mode_name(modes.front()), "full ms", "store ms", "cached ms", "caches", "arena",
             "agree");
  for (int64_t L : lengths) {
    MOSAIC_CHECK(L > f.gen_length, "--tokens {} leaves no prompt before --gen-length {}", L, f.gen_length);
    const std::vector<int32_t> prompt = random_prompt(m.config(), L - f.gen_length);
    double base_tps = 0;
    std::vector<int32_t> first_tokens;  // the first mode's generation, to compare the others with
    for (CacheMode mode : modes) {
      CacheOptions cache{mode, f.sparse_keep, f.sparse_kernel};
      nlohmann::json jr = {{"tokens", L}, {"cache", cache_mode_name(mode)}, {"gen_length", f.gen_length},
                           {"block_length", f.block_length}};
      try {
        const GenerationPlan plan = m.check_generation(cache, {L, f.block_length, f.block_length}, false);
        TimedGeneration t = timed_generation(m, prompt, f, cache);
        std::map<CacheStep, KindTime>& kinds = t.kinds;
        const size_t arena = t.arena;
        const GenerateResult& r = t.result;
        const double tps = static_cast<double>(f.gen_length) / (r.total_ms / 1000);
        // The generated tokens against the first mode's (1 for an exact cache on a fixed schedule).
        const std::vector<int32_t> gen(r.tokens.begin() + r.prompt_length, r.tokens.end());
        if (mode == modes.front()) first_tokens = gen;
        int64_t same = 0;
        for (size_t i = 0; i < std::min(gen.size(), first_tokens.size()); ++i) same += gen[i] == first_tokens[i];
        const double agree = gen.empty() ? 0.0 : static_cast<double>(same) / static_cast<double>(gen.size());
        if (mode == modes.front()) base_tps = tps;
        auto avg = [&](CacheStep k) { return kinds[k].steps ? kinds[k].ms / kinds[k].steps : 0.0; };
        fmt::print("{:>9} {:>7} {:>9.2f} {:>9.2f} {:>6.2f}x {:>10.2f} {:>10.2f} {:>10.2f} {:>11} {:>11} {:>7.3f}\n", L,
                   cache_mode_name(mode), r.total_ms / 1000, tps, base_tps > 0 ? tps / base_tps : 0.0,
                   avg(CacheStep::Full), avg(CacheStep::Store), avg(CacheStep::Cached),
                   human_bytes(static_cast<double>(plan.cache_bytes)), human_bytes(static_cast<double>(arena)), agree);
        jr["total_ms"] = r.total_ms;
        jr["tokens_per_s"] = tps;
        jr["speedup_vs_first"] = base_tps > 0 ? tps / base_tps : 0.0;
        jr["cache_bytes"] = plan.cache_bytes;
        jr["arena_bytes"] = arena;
        for (auto k : {CacheStep::Full, CacheStep::Store, CacheStep::Cached}) {
          const char* name = k == CacheStep::Full ? "full" : k == CacheStep::Store ? "store" : "cached";
          jr["steps"][name] = {{"count", kinds[k].steps}, {"ms_mean", avg(k)}};
        }
        jr["output_head"] = std::vector<int32_t>(r.tokens.begin() + r.prompt_length,
                                                 r.tokens.begin() + r.prompt_length + std::min<int64_t>(16, f.gen_length));
        jr["agreement_with_first"] = agree;
      } catch (const Error& e) {
        fmt::print("{:>9} {:>7}  failed: {}\n", L, cache_mode_name(mode), e.what());
        jr["error"] = e.what();
        set_exit_code(1);
      }
      results.push_back(jr);
    }
  }
  return results;
}

}  // namespace mosaic::cli
