// mosaic bench --cache MODES --batch SIZES: generations of several sequences at once, their
// steps in shared passes (Model::step_batch) in rounds of a block, as `mosaic serve` runs
// concurrent requests. Every sequence has its own random prompt of L - gen_length tokens and
// the family's sampler on a fixed schedule (one token per step). The table gives the
// aggregate tokens/s, each sequence's latency (p50, p99), the mean pass time per kind of step
// and the throughput over the first batch size; `agree` compares the first sequence's tokens
// with its tokens in the first size's run.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>

#include "cli/bench_internal.h"
#include "core/error.h"
#include "core/format.h"
#include "decode/engine.h"

namespace mosaic::cli {

namespace {

std::vector<int64_t> parse_sizes(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long x = std::strtoll(item.c_str(), &end, 10);
    MOSAIC_CHECK(end && *end == '\0' && x > 0, "--batch: '{}' is not a positive number of sequences (e.g. 1,4,16)",
                 item);
    v.push_back(x);
  }
  MOSAIC_CHECK(!v.empty(), "--batch is empty: give sizes such as 1,4,16");
  return v;
}

struct BatchRun {
  double total_ms = 0;
  std::vector<double> finish_ms;       // per sequence
  std::map<CacheStep, KindTime> kinds;  // per pass
  std::vector<int32_t> first_tokens;    // the first sequence's generated tokens
  size_t arena = 0;
};

// B fresh generations of L tokens, sequence i with its own random prompt (seed 1234 + i).
struct Batch {
  std::vector<std::unique_ptr<Sampler>> samplers;
  std::vector<Sequence> seqs;
  std::vector<BatchMember> unfinished() {
    std::vector<BatchMember> round;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (!seqs[i].finished) round.push_back({samplers[i].get(), &seqs[i], static_cast<int64_t>(i)});
    return round;
  }
};

Batch make_batch(const Model& m, const BenchFlags& f, int64_t L, int64_t B, const CacheOptions& cache) {
  const int64_t P = L - f.gen_length;
  Batch b;
  for (int64_t i = 0; i < B; ++i) {
    b.samplers.push_back(default_sampler(m, P, f.gen_length, f.gen_length, f.block_length, cache));
    b.seqs.push_back(Sequence::start(random_prompt(m.config(), P, 1234 + static_cast<uint32_t>(i)),
                                     b.samplers.back()->sequence_length(P, f.gen_length) - P,
                                     static_cast<int32_t>(m.config().mask_token_id), 0));
  }
  return b;
}

BatchRun run_batch(Model& m, const BenchFlags& f, int64_t L, int64_t B, const CacheOptions& cache) {
  BatchRun run;
  const int64_t P = L - f.gen_length;
  for (int rep = 0; rep <= f.warmup_generations; ++rep) {  // the first ones warm up
    Batch batch = make_batch(m, f, L, B, cache);
    run = {};
    run.finish_ms.assign(static_cast<size_t>(B), 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    auto since = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
    for (;;) {
      const std::vector<BatchMember> round = batch.unfinished();
      if (round.empty()) break;
      run_batch_block(m, round, [&](const std::vector<BatchMember>& members, const std::vector<StepEvent>& events) {
        for (size_t k = 0; k < events.size(); ++k)
          if (members[k].sequence->finished) run.finish_ms[members[k].id] = since();
        if (events.empty() || !events.front().ran_model) return;
        KindTime& kt = run.kinds[events.front().cache_step];
        kt.steps += 1;
        kt.ms += events.front().stats.ms;
        run.arena = std::max(run.arena, events.front().stats.arena_bytes);
      });
    }
    run.total_ms = since();
    run.first_tokens.assign(batch.seqs[0].tokens.begin() + P, batch.seqs[0].tokens.end());
  }
  return run;
}

// One more round of B fresh sequences: its first pass (the store) untimed, the rest with op
// times (each node waits for the device).
OpTimes cached_pass_op_times(Model& m, const BenchFlags& f, int64_t L, int64_t B, const CacheOptions& cache) {
  Batch batch = make_batch(m, f, L, B, cache);
  OpTimes times;
  run_batch_block(m, batch.unfinished(), [&](const std::vector<BatchMember>&, const std::vector<StepEvent>&) { m.set_op_times(&times); });
  m.set_op_times(nullptr);
  return times;
}

}  // namespace

nlohmann::json bench_batches(Model& m, const BenchFlags& f, const std::vector<int64_t>& lengths) {
  const std::vector<CacheMode> modes = parse_cache_modes(f.cache);
  const std::vector<int64_t> sizes = parse_sizes(f.batch);
  nlohmann::json results = nlohmann::json::array();
  fmt::print("{:>8} {:>6} {:>6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6}\n", "tokens", "cache", "seqs",
             "total s", "tokens/s", "vs " + std::to_string(sizes.front()), "p50 s", "p99 s", "full ms", "store ms",
             "cached ms", "agree");
  for (int64_t L : lengths) {
    MOSAIC_CHECK(L > f.gen_length, "--tokens {} leaves no prompt before --gen-length {}", L, f.gen_length);
    for (CacheMode mode : modes) {
      const CacheOptions cache{mode, f.sparse_keep, f.sparse_kernel};
      MOSAIC_CHECK(mode != CacheMode::Sparse, "--batch: a sparse cache's generations run alone (use none, prefix or dual)");
      double base_tps = 0;
      std::vector<int32_t> base_tokens;
      for (int64_t B : sizes) {
        nlohmann::json jr = {{"tokens", L}, {"cache", cache_mode_name(mode)}, {"sequences", B},
                             {"gen_length", f.gen_length}, {"block_length", f.block_length}};
        try {
          const std::vector<GenerationShape> shapes(static_cast<size_t>(B), {L, f.block_length, f.block_length});
          const GenerationPlan plan = m.check_batch(cache, shapes, false);
          if (!plan.fits)
            throw Error(fmt::format("{} sequences of {} tokens do not fit the {} activation budget together", B, L,
                                    human_bytes(static_cast<double>(m.activation_budget()))));
          BatchRun r = run_batch(m, f, L, B, cache);
          const double tps = static_cast<double>(B * f.gen_length) / (r.total_ms / 1000);
          if (B == sizes.front()) base_tps = tps, base_tokens = r.first_tokens;
          std::vector<double> lat = r.finish_ms;
          std::sort(lat.begin(), lat.end());
          auto pct = [&](double q) { return lat[std::min(lat.size() - 1, static_cast<size_t>(q * (lat.size() - 1) + 0.5))] / 1000; };
          int64_t same = 0;
          for (size_t i = 0; i < std::min(r.first_tokens.size(), base_tokens.size()); ++i)
            same += r.first_tokens[i] == base_tokens[i];
          const double agree = r.first_tokens.empty() ? 0.0 : static_cast<double>(same) / static_cast<double>(r.first_tokens.size());
          auto avg = [&](CacheStep k) { return r.kinds[k].steps ? r.kinds[k].ms / r.kinds[k].steps : 0.0; };
          fmt::print("{:>8} {:>6} {:>6} {:>9.2f} {:>9.2f} {:>7.2f}x {:>9.2f} {:>9.2f} {:>9.2f} {:>10.2f} {:>10.2f} {:>6.3f}\n",
                     L, cache_mode_name(mode), B, r.total_ms / 1000, tps, base_tps > 0 ? tps / base_tps : 0.0,
                     pct(0.5), pct(0.99), avg(CacheStep::Full), avg(CacheStep::Store), avg(CacheStep::Cached), agree);
          jr["total_ms"] = r.total_ms;
          jr["tokens_per_s"] = tps;
          jr["speedup_vs_first"] = base_tps > 0 ? tps / base_tps : 0.0;
          jr["latency_p50_s"] = pct(0.5);
          jr["latency_p99_s"] = pct(0.99);
          jr["arena_bytes"] = r.arena;
          jr["cache_bytes"] = plan.cache_bytes;
          for (auto k : {CacheStep::Full, CacheStep::Store, CacheStep::Cached}) {
            const char* name = k == CacheStep::Full ? "full" : k == CacheStep::Store ? "store" : "cached";
            jr["passes"][name] = {{"count", r.kinds[k].steps}, {"ms_mean", avg(k)}};
          }
          jr["agreement_with_first"] = agree;
          if (f.op_times) {
            fmt::print("  op times of one round's passes after its first, {} sequences:\n", B);
            jr["op_times"] = print_op_times(cached_pass_op_times(m, f, L, B, cache));
          }
        } catch (const Error& e) {
          fmt::print("{:>8} {:>6} {:>6}  failed: {}\n", L, cache_mode_name(mode), B, e.what());
          jr["error"] = e.what();
          set_exit_code(1);
        }
        results.push_back(jr);
      }
    }
  }
  return results;
}

}  // namespace mosaic::cli
